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
