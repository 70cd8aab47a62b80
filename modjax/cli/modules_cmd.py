"""The module commands `modjax modularize`, `modjax compose` and `modjax replace`: registration."""

from modjax.cli import compose_cmd, modularize_cmd, replace_cmd
from modjax.cli._runs import load_run, restore_parent
from modjax.cli.compose_cmd import compose
from modjax.cli.modularize_cmd import MODULAR_METHODS, modularize
from modjax.cli.replace_cmd import replace


def add_commands(sub) -> None:
    """Registers `modularize`, `compose` and `replace` on `sub` (argparse subparsers)."""
    modularize_cmd.add_parser(sub)
    compose_cmd.add_parser(sub)
    replace_cmd.add_parser(sub)


__all__ = [
    "MODULAR_METHODS", "add_commands", "compose", "load_run", "modularize", "replace",
    "restore_parent",
]
