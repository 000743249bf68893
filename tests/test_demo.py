"""The demo end to end in its quick form (numbers meaningless; the pipeline and outputs are checked)."""

import json

import pytest

from fnac.cli import main


@pytest.mark.slow
def test_demo_quick_writes_table_overlays_and_curves(tmp_path, capsys):
    out = tmp_path / "demo"
    # --set reaches both models' configs, but cannot switch the ablation's regularisers back on
    assert main(["demo", "--quick", "--out", str(out), "--set", "model.tau=0.05", "--set", "loss.fns1=5"]) == 0
    text = capsys.readouterr().out
    for row in ("FNAC", "EZ-VSL", "baseline: centre prior", "baseline: whole image", "baseline: random"):
        assert row in text, row
    assert "16 evaluated of 16 listed" in text
    res = json.loads((out / "results.json").read_text())
    assert set(res["results"]) == {"FNAC", "EZ-VSL (FNAC, weights 0)"}
    for tag in ("fnac", "ezvsl"):
        assert (out / tag / "curves.png").is_file() and (out / tag / "latest.pt").is_file()
        assert len(list((out / tag / "eval" / "overlays").glob("*.png"))) == 6
    # the EZ-VSL run trained with the three regulariser weights at 0
    cfg = (out / "ezvsl" / "config.yaml").read_text()
    assert "fns1: 0.0" in cfg and "tns: 0.0" in cfg and "fns2: 0.0" in cfg
    assert "tau: 0.05" in cfg and "tau: 0.05" in (out / "fnac" / "config.yaml").read_text()
    assert "fns1: 5" in (out / "fnac" / "config.yaml").read_text()


def test_demo_config_recipe_and_synth_fields_pass_through():
    """DemoConfig keeps the demo's defaults (the small config, today's data) and hands extra SynthConfig
    fields to the generator unchanged; shrink() keeps both."""
    import dataclasses

    import pytest

    from fnac.demo import DemoConfig, synth_config
    from fnac.errors import ConfigError
    from fnac.synth import SynthConfig

    dc = DemoConfig()
    assert dc.config == "small" and dc.synth == {}
    sc = synth_config(dc, 128)
    assert (sc.n_train, sc.n_classes, sc.image_size, sc.duration, sc.min_distractors, sc.max_distractors) == (
        2048,
        10,
        128,
        1.0,
        1,
        1,
    )
    dc = DemoConfig(config="reference_synth", synth={"noise_level": 0.1, "clutter": 3}).shrink()
    assert dc.config == "reference_synth" and dc.quick
    sc = synth_config(dc, 64)
    assert (sc.noise_level, sc.clutter, sc.n_train, sc.image_size) == (0.1, 3, 64, 64)
    with pytest.raises(ConfigError, match="unknown keys"):
        synth_config(DemoConfig(synth={"no_such_knob": 1}), 64)
    names = {f.name for f in dataclasses.fields(SynthConfig)}
    for field, value in (("shortcut", 0.5), ("class_skew", 1.0), ("variation", 0.3)):
        if field in names:  # fields of a newer synth.py
            assert getattr(synth_config(DemoConfig(synth={field: value}), 64), field) == value
