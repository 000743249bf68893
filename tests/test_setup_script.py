"""scripts/setup.sh with a stubbed interpreter, pip and torch: it accepts whatever torch build pip
installs (a CUDA build included), installs torch in the same pip command as the rest, passes a
user-named torch index to that command, and is idempotent. What cannot run here (a real download from
the public index, a real GPU) is listed in CONTRIBUTING.md."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_TORCH = """
__version__ = "2.13.0+cu130"
class version:
    cuda = "13.0"
class cuda:
    @staticmethod
    def is_available():
        return {gpu}
    @staticmethod
    def get_device_name(i):
        return "Fake GPU 80GB"
"""


def _sandbox(tmp_path: Path, gpu: bool) -> tuple[Path, Path, dict]:
    proj = tmp_path / "proj"
    (proj / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", proj / "scripts" / "setup.sh")
    shutil.copy(ROOT / "requirements.txt", proj)
    shutil.copy(ROOT / "pyproject.toml", proj)
    fake = tmp_path / "faketorch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_TORCH.format(gpu=gpu))
    log = tmp_path / "pip.log"
    venv_python = f"""#!/usr/bin/env bash
echo "$*" >> {log}
if [ "$1" = "-" ]; then PYTHONPATH={fake.parent} exec {sys.executable} -; fi
exit 0
"""
    stub = tmp_path / "python-stub"
    stub.write_text(f"""#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  cat > "$3/bin/python" <<'EOF'
{venv_python}EOF
  chmod +x "$3/bin/python"
fi
""")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "FNAC_TORCH_INDEX"}
    env["PYTHON"] = str(stub)
    return proj, log, env


def _run(proj: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=proj, env=env, capture_output=True, text=True, timeout=60)


def _installs(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "pip install" in line and "-r" in line.split()]


def test_cuda_build_is_accepted_and_reported(tmp_path):
    proj, log, env = _sandbox(tmp_path, gpu=True)
    res = _run(proj, env)
    assert res.returncode == 0, res.stderr
    assert "torch 2.13.0+cu130 (CUDA 13.0 build); GPU available: Fake GPU 80GB" in res.stdout
    installs = _installs(log)
    assert len(installs) == 1 and "requirements.txt" in installs[0] and "--extra-index-url" not in installs[0]
    assert "torch==2.13.0" in (proj / "requirements.txt").read_text().splitlines()


def test_cuda_build_without_gpu_trains_on_cpu_and_setup_is_idempotent(tmp_path):
    proj, log, env = _sandbox(tmp_path, gpu=False)
    res = _run(proj, env)
    assert res.returncode == 0, res.stderr
    assert "no GPU visible: training runs on the CPU" in res.stdout
    n = len(log.read_text().splitlines())
    again = _run(proj, env)
    assert again.returncode == 0 and len(log.read_text().splitlines()) == n  # nothing reinstalled


def test_user_named_torch_index_goes_into_the_same_pip_command(tmp_path):
    proj, log, env = _sandbox(tmp_path, gpu=False)
    assert _run(proj, env).returncode == 0
    env["FNAC_TORCH_INDEX"] = "http://127.0.0.1:9/whl/cpu"
    res = _run(proj, env)  # a changed index is a changed environment: install again
    assert res.returncode == 0, res.stderr
    last = _installs(log)[-1].split()
    assert last[last.index("--extra-index-url") + 1] == "http://127.0.0.1:9/whl/cpu"
    assert "requirements.txt" in last
