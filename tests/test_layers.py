"""The import direction of design.md: data flows one way; nothing imports the CLI.

Every module of src/fnac has a layer; a module may import modules of its own layer or below only.
A new module must be given a layer here (the test fails on unknown modules)."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fnac"

LAYERS = {
    0: ["fnac", "fnac.errors", "fnac.config", "fnac.distributed"],
    1: ["fnac.safeload", "fnac.media", "fnac.audio", "fnac.vision", "fnac.localization", "fnac.metrics"],
    2: ["fnac.models", "fnac.models.resnet", "fnac.models.fnac", "fnac.losses", "fnac.data", "fnac.data.*"],
    3: ["fnac.checkpoint", "fnac.synth", "fnac.visualize", "fnac.prepare"],
    4: ["fnac.train", "fnac.evaluate", "fnac.inference", "fnac.cache", "fnac.pretrain"],
    5: ["fnac.report", "fnac.demo", "fnac.serve", "fnac.serve.*"],
    6: ["fnac.commands", "fnac.commands.*", "fnac.cli", "fnac.__main__"],
}
# the package root re-exports the public API lazily-free: it may import these
ROOT_EXPORTS = {"fnac.checkpoint", "fnac.models.fnac"}


def layer_of(mod: str) -> int:
    for layer, names in LAYERS.items():
        for n in names:
            if mod == n or (n.endswith(".*") and mod.startswith(n[:-1])):
                return layer
    raise KeyError(mod)


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def fnac_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("fnac"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fnac"):
            for a in node.names:  # "from fnac import media" imports the module fnac.media
                full = f"{node.module}.{a.name}"
                try:
                    layer_of(full)
                    out.add(full)
                except KeyError:
                    out.add(node.module)
    return out


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_downward(path):
    mod = module_name(path)
    mine = layer_of(mod)  # KeyError: give the new module a layer above
    for imp in fnac_imports(path):
        if mod == "fnac" and imp in ROOT_EXPORTS:
            continue
        if imp.startswith("fnac.cli") or imp.startswith("fnac.commands"):
            assert mod == "fnac.cli" or mod == "fnac.__main__" or mod.startswith("fnac.commands"), (mod, imp)
        assert layer_of(imp) <= mine, f"{mod} (layer {mine}) imports {imp} (layer {layer_of(imp)})"


def test_fnac_help_lists_the_commands(capsys):
    from fnac.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for cmd in ("synth", "train", "eval", "localize", "serve", "prepare", "data", "cache", "demo", "pretrain"):
        assert cmd in text, cmd
