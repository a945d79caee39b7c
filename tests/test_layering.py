"""The families' layering (pyproject.toml ``[tool.importlinter]``): downward imports only, Ray in the spine only.

On the code before issue 16 this failed: training imported ``refinery.mixes.manifest``, and ``dedup/embed.py``,
``mixes/writer.py``, ``mixes/optimizer/proxies.py`` and ``training/api.py`` imported Ray.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(capsys) -> None:
    cli = pytest.importorskip("importlinter.cli", reason="import-linter is a dev dependency")
    code = cli.lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True)
    output = capsys.readouterr().out
    assert "only the spine imports Ray KEPT" in output and "families import downward only" in output
    assert code == 0, output


def test_command_modules_all_exist(monkeypatch) -> None:
    from refinery.pipelines import commands

    monkeypatch.setattr(commands, "_LOADED", False)
    assert {"shards", "verify", "train", "mix", "label"} <= set(commands.command_registry())
    monkeypatch.setattr(commands, "_LOADED", False)
    monkeypatch.setattr(commands, "COMMAND_MODULES", (*commands.COMMAND_MODULES, "refinery.dedup.commands"))
    with pytest.raises(ModuleNotFoundError, match=r"refinery\.dedup\.commands"):
        commands.command_registry()
