"""The module commands `modjax modularize`, `modjax compose` and `modjax replace`: registration."""

from modjax.cli import compose_cmd, modularize_cmd, replace_cmd
from modjax.cli.compose_cmd import compose
from modjax.cli.modularize_cmd import modularize
from modjax.cli.replace_cmd import replace


def add_commands(sub) -> None:
    """Registers `modularize`, `compose` and `replace` on `sub` (argparse subparsers)."""
    modularize_cmd.add_parser(sub)
    compose_cmd.add_parser(sub)
    replace_cmd.add_parser(sub)


__all__ = ["add_commands", "compose", "modularize", "replace"]
