"""fnac.cli: a command module that fails to import is an error, never a command silently missing from
`fnac --help`; `fnac cache` skips a split without an id list by the error's type, not its wording."""

from __future__ import annotations

import pytest

import fnac.commands
from fnac import cli
from fnac.errors import DataError, IdListNotFoundError


def test_missing_command_module_surfaces(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ["localize", "no_such_command"])
    with pytest.raises(ModuleNotFoundError) as e:
        cli.build_parser()
    assert e.value.name == "fnac.commands.no_such_command"


def test_command_with_a_broken_dependency_surfaces(monkeypatch, tmp_path):
    (tmp_path / "broken_cmd.py").write_text("import fnac_no_such_dependency_xyz\n")
    monkeypatch.setattr(fnac.commands, "__path__", [*fnac.commands.__path__, str(tmp_path)])
    monkeypatch.setattr(cli, "COMMANDS", ["broken_cmd"])
    with pytest.raises(ModuleNotFoundError, match="fnac_no_such_dependency_xyz"):
        cli.build_parser()


def test_every_listed_command_imports():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert len(sub.choices) == len(fnac.commands.COMMANDS)


def test_cache_skips_a_split_by_error_type(monkeypatch, capsys, tmp_path):
    import fnac.cache

    def fake(data_cfg, out_dir, split, **kw):
        if split == "val":
            raise IdListNotFoundError("val id list (data.val_list) not found (looked for x); set it in the config")
        raise DataError("test: the id list was not found in a message only")  # wording alone skips nothing

    monkeypatch.setattr(fnac.cache, "cache_split", fake)
    args = ["cache", "--out", str(tmp_path / "c"), "--no-progress"]
    assert cli.main(args + ["--splits", "val"]) == 0  # skipped with a warning
    assert cli.main(args + ["--splits", "val", "test"]) == 1
    assert "the id list was not found" in capsys.readouterr().err


def test_train_split_without_a_list_is_an_error(monkeypatch, tmp_path, capsys):
    import fnac.cache

    def fake(data_cfg, out_dir, split, **kw):
        raise IdListNotFoundError("train id list (data.train_list) not found")

    monkeypatch.setattr(fnac.cache, "cache_split", fake)
    assert cli.main(["cache", "--out", str(tmp_path / "c"), "--splits", "train"]) == 1
    assert "train id list" in capsys.readouterr().err


def test_id_list_errors_are_typed(tmp_path):
    from fnac.config import DataConfig
    from fnac.data.common import read_id_list, split_list_path

    with pytest.raises(IdListNotFoundError, match="id list not found"):
        read_id_list(tmp_path / "none.txt")
    with pytest.raises(IdListNotFoundError, match="val id list"):
        split_list_path(DataConfig(root=str(tmp_path)), "val", {"val": ["val.txt"]})
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError) as e:
        read_id_list(tmp_path / "empty.txt")
    assert not isinstance(e.value, IdListNotFoundError)
