"""CLI verbs contributed by the stage families (``refinery shards``, ``refinery label``, ``refinery train``, ...).

``pipelines/`` never imports a family by module path in code: like stages, commands are found by name. A
family declares its verbs in a ``commands`` module (``refinery.mixes.commands``, ...) with
:func:`register_command`; :func:`command_registry` imports those modules once (every one listed must exist:
a missing one is an import error, not a silently absent verb). A command module must keep
heavy imports inside its handler so ``refinery --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

COMMAND_MODULES = (
    "refinery.classifiers.commands",
    "refinery.mixes.commands",
    "refinery.mixes.optimizer.commands",
    "refinery.training.commands",
)


@dataclass(frozen=True)
class Command:
    """A verb: ``configure`` adds its arguments to a subparser, ``handler`` runs it and returns the exit code."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, Command] = {}
_LOADED = False


def register_command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Decorator for a handler ``(args) -> exit code``: make it the ``refinery NAME`` verb."""

    def decorate(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in _COMMANDS and _COMMANDS[name].handler is not handler:
            raise ValueError(f"command {name!r} is already registered")
        _COMMANDS[name] = Command(name, help, configure, handler)
        return handler

    return decorate


def command_registry() -> dict[str, Command]:
    """Every family command by verb (imports the families' ``commands`` modules on first use)."""
    global _LOADED
    if not _LOADED:
        for module in COMMAND_MODULES:
            # a listed module that is missing is a packaging error: fail loudly instead of losing verbs
            importlib.import_module(module)
        _LOADED = True
    return dict(_COMMANDS)
