"""Flag helpers shared by the `modjax` sub-commands."""

import argparse


def add_bool_flag(parser: argparse.ArgumentParser, name: str, *, default, help: str) -> None:
    """`--name/--no-name`; `help` is shown as given (some Pythons append the default otherwise)."""
    action = parser.add_argument(
        f"--{name.replace('_', '-')}",
        dest=name,
        action=argparse.BooleanOptionalAction,
        default=default,
        help=help,
    )
    action.help = help
