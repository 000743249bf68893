"""The config tree catches mistakes where they are made: every fixed-choice field is checked when the
config loads (YAML or override), naming the key and the allowed values; built-in names load by name."""

import pytest

from fnac.config import load_config
from fnac.errors import ConfigError

CHOICES = {
    "data.spec_mask": ("reference", "specaugment", "none"),
    "optim.name": ("adam", "adamw"),
    "train.eval_upsample": ("bicubic", "bilinear"),
    "train.eval_threshold": ("median_ge", "median_gt", "fixed", "absolute"),
    "train.on_nonfinite": ("stop", "skip"),
    "train.amp": ("none", "bf16"),
}


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_fixed_choice_typo_fails_at_load_naming_key_and_choices(key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}=nonsense"])
    msg = str(e.value)
    assert key in msg and "nonsense" in msg
    assert all(repr(c) in msg for c in CHOICES[key])


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_every_allowed_value_loads(key):
    section, name = key.split(".")
    for choice in CHOICES[key]:
        cfg = load_config(None, [f"{key}={choice}"])
        assert getattr(getattr(cfg, section), name) == choice


def test_typo_in_yaml_file_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  spec_mask: refrence\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "bad.yaml" in str(e.value) and "data.spec_mask" in str(e.value) and "'specaugment'" in str(e.value)


def test_builtin_config_loads_by_name():
    cfg = load_config("reference_vggss")
    assert cfg.loss.fns1 == 100 and cfg.model.vision_dropout == 0.9 and cfg.train.batch_size == 256
    small = load_config("small", ["train.epochs=2"])
    assert small.train.epochs == 2 and small.model.width == 16
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config")
