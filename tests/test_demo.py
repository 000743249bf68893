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


@pytest.mark.slow
def test_side_by_side_training_gives_the_one_after_another_results(tmp_path):
    """--jobs 2 (each model in its own process, one torch thread each) trains exactly what --jobs 1
    trains in this process with one thread: the same test-split numbers to the last digit."""
    import torch

    from fnac.demo import DemoConfig, run_demo

    both = run_demo(DemoConfig(out_dir=str(tmp_path / "two"), jobs=2).shrink())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run_demo(DemoConfig(out_dir=str(tmp_path / "one"), jobs=1).shrink())
    finally:
        torch.set_num_threads(threads)
    assert both["results"] == one["results"] and both["baselines"] == one["baselines"]
    for tag in ("fnac", "ezvsl"):  # each run logged to its own file, not over the other's progress
        assert "epoch 2/2" in (tmp_path / "two" / tag / "train.log").read_text()


def test_demo_jobs_auto_and_explicit(monkeypatch):
    import fnac.demo as demo

    monkeypatch.setattr(demo, "_cpus", lambda: 2)
    assert demo.demo_jobs(demo.DemoConfig(), "cpu") == 2
    assert demo.demo_jobs(demo.DemoConfig(jobs=1), "cpu") == 1
    assert demo.demo_jobs(demo.DemoConfig(jobs=5), "cpu") == 2  # two models at most
    monkeypatch.setattr(demo, "_cpus", lambda: 1)
    assert demo.demo_jobs(demo.DemoConfig(), "cpu") == 1


def test_side_by_side_error_is_one_line(tmp_path, capsys):
    """A run that fails in its process (a missing weights file) ends the demo with the run's own
    one-line error and exit status 2, no traceback."""
    missing = tmp_path / "no_such_weights.pth"
    code = main(
        ["demo", "--quick", "--jobs", "2", "--out", str(tmp_path / "d"), "--set", f"model.pretrained={missing}"]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert str(missing) in err and "Traceback" not in err


def test_orphaned_run_is_told_to_stop(tmp_path):
    """A side-by-side run whose demo process died gets SIGTERM (fit then saves latest.pt and returns)."""
    import subprocess
    import sys
    import time

    flag = tmp_path / "stopped"
    code = (
        "import os, signal, sys, time\n"
        "from fnac.demo import _stop_when_orphaned\n"
        "def stopped(*a):\n"
        "    with open(sys.argv[1] + '.tmp', 'w') as f:\n"
        "        f.write('ok')\n"
        "    os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"  # whole or absent: the test polls for it
        "    os._exit(0)\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, stopped)\n"
        "    _stop_when_orphaned(poll=0.05)\n"
        "    time.sleep(30)\n"
        "    os._exit(1)\n"
        "time.sleep(0.5)\n"
        "os._exit(0)\n"  # the demo process dies; its run is orphaned
    )
    subprocess.run([sys.executable, "-c", code, str(flag)], check=True, timeout=30)
    deadline = time.monotonic() + 20
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert flag.exists() and flag.read_text() == "ok"
