"""The import direction of CONTRIBUTING.md ("Import layers"): data flows one way; nothing imports the CLI.

Every module of src/fnac has a layer; a module may import modules of its own layer or below only.
A new module must be given a layer here (the test fails on unknown modules)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fnac"

LAYERS = {
    0: ["fnac", "fnac.errors", "fnac.config", "fnac.distributed", "fnac.fileio"],
    1: [
        "fnac.safeload",
        "fnac.weights",
        "fnac.media",
        "fnac.audio",
        "fnac.vision",
        "fnac.localization",
        "fnac.metrics",
        "fnac.results",
        "fnac.scoring",
    ],
    2: [
        "fnac.models",
        "fnac.models.resnet",
        "fnac.models.fnac",
        "fnac.losses",
        "fnac.inputs",
        "fnac.data",
        "fnac.data.*",
        "fnac.cache",
    ],
    3: ["fnac.checkpoint", "fnac.export", "fnac.synth", "fnac.visualize", "fnac.outputs", "fnac.prepare"],
    4: ["fnac.train", "fnac.evaluate", "fnac.inference", "fnac.pretrain"],
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


def _module_graph() -> dict[str, set[str]]:
    """module -> the fnac modules it imports (at the top or inside functions), names resolved to the
    module that defines them."""
    names = {module_name(p): p for p in MODULES}

    def owner(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {o for o in map(owner, fnac_imports(p)) if o and o != m} for m, p in names.items()}


def test_no_import_cycles():
    """No module imports itself through others, not even through an import inside a function."""
    graph = _module_graph()
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m) :] + [m]))
        if m in done:
            return
        for n in sorted(graph[m]):
            visit(n, path + [m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])


def test_fnac_help_lists_the_commands(capsys):
    from fnac.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for cmd in (
        "synth",
        "train",
        "eval",
        "localize",
        "serve",
        "prepare",
        "data",
        "cache",
        "demo",
        "weights",
        "export",
        "pretrain",
    ):
        assert cmd in text, cmd
