"""One tree of dataclasses for a run, loaded from YAML plus "a.b=value" overrides.

Defaults equal the reference recipe (docs/method.md §3). Unknown keys and wrong types fail before
anything runs, naming the key. Imports nothing of fnac but errors.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fnac.errors import ConfigError


@dataclass
class ModelConfig:
    """FNAC's two encoders (docs/method.md §1)."""

    embed_dim: int = 512  # C: channels of the joint embedding
    width: int = 64  # ResNet-18 base width (64 = the real ResNet-18; 16 or 32 for small CPU runs)
    # Visual stages kept: 4 = the reference (layer4 map, stride 32: 7x7 at 224 px). 2 or 3 stop after
    # layer2 / layer3 (stride 8 / 16): a smaller receptive field, which a model trained from scratch
    # needs to learn *where* in minutes (docs/results.md); ImageNet weights of the kept stages still load.
    visual_layers: int = 4
    tau: float = 0.03  # temperature of every similarity
    vision_dropout: float = 0.9  # element-wise dropout on the visual 7x7 map (training only)
    audio_dropout: float = 0.0  # present in the reference, disabled
    # Not in the reference (False = the reference): batch-norm each embedding channel, over the batch
    # (and the map's positions), before the L2 norm. A from-scratch model's embeddings all point the
    # same way at initialisation, so every logit is alike and the contrastive loss sits at chance for
    # a seed-dependent number of epochs; centring them removes that plateau (docs/results.md).
    proj_bn: bool = False
    # torchvision resnet18 ImageNet weights file for the visual backbone. "" = the PyTorch cache if it
    # holds them (`fnac weights fetch resnet18-imagenet`), else a warning and random initialisation;
    # "none" = random initialisation on purpose (no cache lookup, no warning).
    pretrained: str = ""
    pretrained_required: bool = False  # fail instead of warning when `pretrained` is empty or missing


@dataclass
class DataConfig:
    """Where the data lives and how samples become tensors (docs/method.md §4, docs/datasets.md)."""

    dataset: str = "vggss"  # layout: "vggss" (VGG-Sound/VGG-SS, also the synthetic set) or "flickr"
    root: str = "data/synth"  # folder holding frames/ and audio/ (or a Flickr Data/ tree)
    train_list: str = ""  # id list for training ("" = <root>/train.txt)
    val_list: str = ""  # id list for checkpoint selection ("" = <root>/val.txt)
    test_list: str = ""  # id list for evaluation ("" = <root>/test.txt)
    annotations: str = ""  # vggss.json-style file or Flickr Annotations/ folder ("" = <root>/annotations.json)
    exclude_list: str = ""  # ids never used for training (e.g. the test ids, to stop train/test leakage)
    # Added by the data layer: SLAVC's <set>_test_plus_silent.csv for data.dataset=extended_vggss /
    # extended_flickr ("" = <root>/<vggss|flickr>_test_plus_silent.csv); its non-sounding rows are the negatives.
    extended_list: str = ""
    image_size: int = 224  # square model input (test: bicubic resize; train: resize 1.1x + random crop)
    audio_duration: float = 3.0  # seconds of audio centred in the clip
    sample_rate: int = 0  # 0 = keep the file's native rate (the reference); >0 resamples
    spec_mask: Literal["reference", "specaugment", "none"] = (
        "reference"  # "reference" (axis-swapped masks), "specaugment" (axis-correct), "none"
    )
    alpha: Literal["drop", "white"] = (
        "drop"  # transparent frames: "drop" the alpha channel (the reference) or composite over "white"
    )
    num_workers: int = 2
    max_skip_fraction: float = 0.05  # stop training when more than this fraction of samples fail to load
    # Added for the fast data path: a folder written by `fnac cache` ("" = read the plain layout, as
    # before). Splits found there are read without decoding; others fall back to the plain layout.
    cache: str = ""


@dataclass
class LossConfig:
    """FNAC objective (docs/method.md §2). All three weights 0 gives the EZ-VSL baseline."""

    fns1: float = 100.0  # weight of L_FNS1 (audio adjacency vs cross-modal)
    tns: float = 100.0  # weight of L_TNS (audio adjacency vs foreground visual)
    fns2: float = 100.0  # weight of L_FNS2 (visual adjacency vs cross-modal)
    warmup_epochs: int = 5  # epochs trained with the contrastive loss alone
    tns_threshold: float = 0.6  # foreground mask threshold on the min-max normalised map
    gather: bool = False  # distributed: gather embeddings from all processes so negatives are global


@dataclass
class OptimConfig:
    """Adam with L2 weight decay inside Adam, constant learning rate (the reference)."""

    name: Literal["adam", "adamw"] = "adam"  # "adam" (reference) or "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    seed: int = 12345
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    out_dir: str = "runs/fnac"
    log_every: int = 10  # steps between JSONL log lines
    val_every: int = 1  # epochs between validation passes (best checkpoint chosen on val only)
    eval_upsample: Literal["bicubic", "bilinear"] = "bicubic"  # validation protocol: interpolation
    eval_threshold: Literal["median_ge", "median_gt", "fixed", "absolute"] = (
        "median_ge"  # validation protocol: threshold variant
    )
    max_steps_per_epoch: int = 0  # 0 = full epochs; >0 caps steps (smoke runs)
    save_every_steps: int = 0  # also write `latest` every N steps mid-epoch (0 = end of epoch only)
    on_nonfinite: Literal["stop", "skip"] = (
        "stop"  # non-finite loss: "stop" or "skip" the batch (never saved either way)
    )
    amp: Literal["none", "bf16"] = (
        "none"  # mixed precision: "none" or "bf16" (autocast; on CPU too, where it is rarely faster)
    )
    channels_last: bool = False  # NHWC image batches and visual weights (faster convolutions on GPU)
    compile: bool = False
    # Added with the benchmarks: torch.compile backend when train.compile is on ("inductor" = default;
    # "eager"/"aot_eager" only trace, for tests and debugging).
    compile_backend: str = "inductor"
    pin_memory: bool = True  # page-locked loader batches (CUDA only; ignored on CPU)
    progress: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ----------------------------------------------------------------------------------------------
def _check_type(key: str, value: Any, typ: Any) -> Any:
    """Return value converted to typ (int -> float allowed), else raise ConfigError naming key.
    A fixed-choice field (``Literal[...]``) accepts exactly one of its values."""
    if typing.get_origin(typ) is Literal:
        allowed = typing.get_args(typ)
        if isinstance(value, str) and value in allowed:
            return value
        raise ConfigError(f"config key '{key}' must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ in (int, float, str):
        if isinstance(value, typ) and not isinstance(value, bool):
            return value
    else:
        return value
    raise ConfigError(f"config key '{key}' expects {typ.__name__}, got {type(value).__name__} {value!r}")


def _merge(obj: Any, values: dict, prefix: str, source: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"{source}: unknown config key '{key}' (known: {', '.join(sorted(names))})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            _merge(cur, v, key + ".", source)
        else:
            try:
                setattr(obj, k, _check_type(key, v, hints[k]))
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}" if source not in ("config", "override") else str(e)) from None


def from_dict(values: dict, source: str = "config") -> Config:
    cfg = Config()
    _merge(cfg, values or {}, "", source)
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply "section.key=value" strings (value parsed as YAML: 1e-4, true, 32, text)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = {}
        nested = node
        for p in parts[:-1]:
            nested[p] = {}
            nested = nested[p]
        value = _parse_scalar(text)
        hint = _leaf_type(cfg, parts, key)
        if (hint is str or typing.get_origin(hint) is Literal) and not isinstance(value, str):
            value = text  # "out_dir=123" is a path, not a number
        nested[parts[-1]] = value
        _merge(cfg, node, "", "override")
    return cfg


def _leaf_type(cfg: Config, parts: list[str], key: str) -> Any:
    obj: Any = cfg
    for p in parts[:-1]:
        if not hasattr(obj, p) or not dataclasses.is_dataclass(getattr(obj, p)):
            raise ConfigError(f"override: unknown config section '{p}' in '{key}'")
        obj = getattr(obj, p)
    hints = typing.get_type_hints(type(obj))
    if parts[-1] not in hints:
        raise ConfigError(f"override: unknown config key '{key}'")
    return hints[parts[-1]]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- overrides. ``path`` is a YAML file or the name of a built-in config
    (``load_config("reference_vggss")``). Raises ConfigError naming the file and key."""
    values: dict = {}
    source = "config"
    if path:
        p = Path(path)
        if not p.is_file() and (BUILTIN_DIR / f"{path}.yaml").is_file():
            p = BUILTIN_DIR / f"{path}.yaml"
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        source = str(p)
    cfg = from_dict(values, source)
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


BUILTIN_DIR = Path(__file__).parent / "configs"


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a built-in config (src/fnac/configs/<name>.yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if builtin.is_file():
        return builtin
    raise ConfigError(
        f"config not found: {name_or_path} (not a file; built-in configs: {', '.join(builtin_configs())})"
    )
