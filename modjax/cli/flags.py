"""Flag helpers shared by the `modjax` sub-commands."""

import argparse
import math


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line naming the flag, the value and the range,
    `PROG: error: MESSAGE (see PROG --help)`, exit status 2; sub-command parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a{'n int' if kind is int else ' number'}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_at_least(low: int):
    """argparse `type=`: an int >= `low` (the error names the value and the range)."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}; expected an int >= {low}")
        return value

    parse.__name__ = f"int >= {low}"
    return parse


def positive_float(text: str) -> float:
    """argparse `type=`: a finite number > 0 (NaN, inf and <= 0 are refused)."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not > 0; expected a finite positive number")
    return value


def unit_interval(text: str) -> float:
    """argparse `type=`: a number in (0, 1] (a threshold θ, a share)."""
    value = _number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is outside (0, 1]")
    return value


def probability(text: str) -> float:
    """argparse `type=`: a probability bar in [0, 1) (`p > bar`; 1 would admit nothing)."""
    value = _number(float, text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1)")
    return value


def closed_unit_interval(text: str) -> float:
    """argparse `type=`: a number in [0, 1] (a loss weight whose complement is the other's)."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value
