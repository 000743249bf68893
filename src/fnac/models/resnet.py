"""ResNet-18 written with torchvision's parameter names, so torchvision's ImageNet weights and the
authors' checkpoints load unchanged (keys like ``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``).

Only the convolutional trunk is built: the global pool and classifier are replaced by the caller
(FNAC uses the layer4 map for images and a global max pool for audio), and neither has parameters
in the reference checkpoints.
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Trunk(nn.Module):
    """conv1 -> bn1 -> relu -> maxpool -> layer1..layer4; returns the layer4 map (B, 8*width, H/32, W/32).

    ``width`` = 64 is the real ResNet-18 (512 output channels); smaller widths make CPU-sized models.
    ``in_channels`` = 1 gives the audio network (first conv 1 -> width, 7x7, stride 2, pad 3, no bias).
    ``layers`` < 4 stops after that stage (not built beyond it): layers=2 returns the layer2 map
    (B, 2*width, H/8, W/8), layers=3 the layer3 map (B, 4*width, H/16, W/16). Kept stages have
    torchvision's parameter names, so ImageNet weights load after dropping the missing stages' keys.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 4) -> None:
        super().__init__()
        if layers not in (1, 2, 3, 4):
            raise ValueError(f"layers must be 1..4, got {layers}")
        self.width = width
        self.layers = layers
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans = [width, 2 * width, 4 * width, 8 * width]
        in_ch = width
        for i, ch in enumerate(chans[:layers]):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(BasicBlock(in_ch, ch, stride), BasicBlock(ch, ch, 1))
            setattr(self, f"layer{i + 1}", layer)
            in_ch = ch
        self.out_channels = chans[layers - 1]
        self.stride = 2 ** (layers + 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.layers + 1):
            x = getattr(self, f"layer{i}")(x)
        return x


def reference_init_(module: nn.Module) -> None:
    """The reference initialisation (docs/method.md §1): Kaiming-normal fan_out convs, truncated
    normal (std 0.01) linear weights, BatchNorm weight ~ N(1, 0.02) and bias 0. Biases of conv and
    linear layers keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, mean=1.0, std=0.02)
            nn.init.zeros_(m.bias)


def imagenet_state_dict(sd: dict[str, Tensor], layers: int = 4) -> dict[str, Tensor]:
    """Strip the classifier (fc.*) of a torchvision resnet18 state dict (the trunk has no fc), and the
    stages after ``layers`` when the trunk stops early."""
    dropped = ("fc.",) + tuple(f"layer{i}." for i in range(layers + 1, 5))
    return {k: v for k, v in sd.items() if not k.startswith(dropped)}


def torch_cache_resnet18() -> str | None:
    """Path of torchvision's ImageNet resnet18 weights in the PyTorch hub cache if already present
    (``fnac weights fetch resnet18-imagenet`` puts them there; never downloads). The published file
    (``resnet18-f37072fd.pth``) first, else any other ``resnet18-*.pth`` torchvision left there.
    Unfinished downloads (``*.part``) are never used."""
    import os

    from fnac.weights import KNOWN, default_dir

    d = str(default_dir())
    if os.path.isdir(d):
        known = os.path.join(d, KNOWN["resnet18-imagenet"].filename)
        if os.path.isfile(known):
            return known
        for name in sorted(os.listdir(d)):
            if name.startswith("resnet18-") and name.endswith(".pth"):
                return os.path.join(d, name)
    return None
