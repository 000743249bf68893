"""What the sweep scripts share: a results file of one JSON row per finished cell (so an interrupted
sweep continues where it stopped), and running cells N at a time, each in its own process."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Results:
    """`<out>/results.jsonl`: the rows already there, and `record` to append one."""

    def __init__(self, out: Path) -> None:
        self.path = out / "results.jsonl"
        text = self.path.read_text() if self.path.is_file() else ""
        self.rows: list[dict] = [json.loads(x) for x in text.splitlines() if x.strip()]

    def record(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)


def run_cells(
    todo: list[Any],
    name: Callable[[Any], str],
    argv: Callable[[Any, Path], list[str]],
    out: Path,
    jobs: int,
    deadline: float,
    record: Callable[[dict], None],
    poll: float = 0.5,
) -> None:
    """Run the cells of `todo`, `jobs` at a time, each as the command `argv(cell, row_file)`, which
    writes its row (JSON) to row_file; its output goes to `<out>/<name(cell)>.log`. Each finished row is
    passed to `record`. With `deadline` > 0 no cell starts after that many seconds (running ones
    finish). A cell that fails is reported and left out (rerun the sweep to retry it)."""
    t0 = time.monotonic()
    todo = list(todo)
    running: list[tuple[subprocess.Popen, Path, Any]] = []
    while todo or running:
        if todo and deadline and time.monotonic() - t0 > deadline:
            print(f"deadline: {len(todo)} cells not started", flush=True)
            todo.clear()
        while todo and len(running) < max(1, jobs):
            cell = todo.pop(0)
            row_file = out / f".row_{name(cell)}.json"
            row_file.unlink(missing_ok=True)
            with open(out / f"{name(cell)}.log", "w") as log:
                proc = subprocess.Popen(argv(cell, row_file), stdout=log, stderr=subprocess.STDOUT)
            running.append((proc, row_file, cell))
        for item in list(running):
            proc, row_file, cell = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode == 0 and row_file.is_file():
                record(json.loads(row_file.read_text()))
                row_file.unlink()
                print(f"cell {name(cell)} done ({time.monotonic() - t0:.0f} s)", flush=True)
            else:
                print(f"cell {name(cell)} FAILED (exit {proc.returncode}; see its .log)", flush=True)
        if running:
            time.sleep(poll)
