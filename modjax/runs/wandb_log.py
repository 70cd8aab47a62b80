"""`--wandb PROJECT`: the run's scalars on Weights & Biases, from process 0 (optional `wandb`).

`check` runs before the run starts, on every process (so a missing package or key stops them all
rather than process 0 alone while the others wait): the package must import, and online mode
needs an API key (`WANDB_API_KEY`, or a `wandb login` entry in the netrc file). Offline mode
(`--wandb-mode offline` or `WANDB_MODE=offline`) needs neither key nor network; its files go to
`<workdir>/wandb/offline-run-*/` for a later `wandb sync`.
"""

import contextlib
import importlib
import netrc
import os
import pathlib
import secrets
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from modjax.modules import atomic
from modjax.runs.tensorboard_log import ScalarLog

MODES = ("online", "offline")
_ENV_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
              "disabled": "disabled"}  # fmt: skip
_BAD_PROJECT_CHARS = "/\\#?%:"
RUN_ID_FILE = "modjax_run_id"  # in <workdir>/wandb/: a resumed run logs to the same W&B run


def resolve_mode(mode: str | None, environ: Mapping[str, str] | None = None) -> str:
    """`mode`, else `$WANDB_MODE` (W&B's spellings: `dryrun` is offline), else `"online"`.

    Raises:
        ValueError: a mode that is not online/offline, naming where it came from.
    """
    environ = os.environ if environ is None else environ
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"--wandb-mode {mode!r} is invalid: expected one of {MODES}")
        return mode
    raw = environ.get("WANDB_MODE", "").strip()
    if not raw:
        return "online"
    if raw not in _ENV_MODES:
        raise ValueError(
            f"WANDB_MODE={raw!r} is invalid: expected one of {sorted(_ENV_MODES)} (or unset)"
        )
    return _ENV_MODES[raw]


def _has_api_key(environ: Mapping[str, str]) -> bool:
    """An API key in the environment, or a netrc login for the W&B host (what `wandb login`
    writes): the sources wandb itself reads before it would prompt."""
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urllib.parse.urlparse(environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    paths = [environ["NETRC"]] if environ.get("NETRC") else ["~/.netrc", "~/_netrc"]
    for raw in paths:
        path = pathlib.Path(raw).expanduser()
        try:
            entry = netrc.netrc(str(path)).authenticators(host) if path.is_file() else None
        except (netrc.NetrcParseError, OSError):
            entry = None
        if entry and entry[2]:
            return True
    return False


def check(project: str, *, mode: str | None = None, environ: Mapping[str, str] | None = None):
    """Checks, before any work, that `project` can be logged to; returns the resolved mode.

    Raises:
        ValueError: an empty project or one with a character W&B refuses, a bad mode, the
            `wandb` package missing, or online mode without an API key; each one line.
    """
    environ = os.environ if environ is None else environ
    if not project.strip() or any(c in project for c in _BAD_PROJECT_CHARS):
        raise ValueError(
            f"--wandb {project!r} is not a W&B project name; expected a non-empty name "
            f"without any of {_BAD_PROJECT_CHARS!r}"
        )
    mode = resolve_mode(mode, environ)
    try:
        importlib.import_module("wandb")
    except ImportError as err:
        raise ValueError(
            f"--wandb {project} needs the wandb package ({err}); install it with "
            "pip install 'modjax[wandb]'"
        ) from None
    if mode == "online" and not _has_api_key(environ):
        raise ValueError(
            f"--wandb {project} in online mode needs a W&B API key: set WANDB_API_KEY or run "
            "`wandb login`, or log offline with --wandb-mode offline (WANDB_MODE=offline)"
        )
    return mode


def _run_id(directory: pathlib.Path) -> str:
    """The workdir's W&B run id (8 hex digits), created on the first run and kept after."""
    path = directory / RUN_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    run_id = secrets.token_hex(4)
    atomic.write_text(path, run_id + "\n")
    return run_id


@contextlib.contextmanager
def open_run(
    project: str,
    *,
    mode: str,
    workdir: pathlib.Path,
    config: Mapping[str, Any],
    enabled: bool = True,
) -> Iterator[ScalarLog | None]:
    """A W&B run logging to `project` (process 0: `enabled`), finished on exit.

    The run's files go under `<workdir>/wandb/`; its id is kept there, so a resumed run continues
    the same W&B run (online, steps W&B already holds are not sent again).

    Yields:
        A `ScalarLog` (`wandb.log(values, step=step)`), or None when not enabled.
    """
    if not enabled:
        yield None
        return
    import wandb

    directory = workdir / "wandb"
    try:
        run = wandb.init(
            project=project,
            dir=str(workdir),
            mode=mode,
            id=_run_id(directory),
            resume="allow",
            name=workdir.resolve().name,
            config=dict(config),
            settings=wandb.Settings(console="off"),  # stdout stays the CLI's and the bar's
        )
    except Exception as err:  # a rejected key, no network: wandb's own error types, one line
        raise RuntimeError(
            f"--wandb {project}: W&B could not start the run ({type(err).__name__}: {err}); "
            "check the key and network, or log offline with --wandb-mode offline"
        ) from err
    first = run.step  # on an online resume: the steps W&B already holds are below it

    def log(step: int, values: Mapping[str, float]) -> None:
        if step >= first:
            run.log(dict(values), step=step)

    ok = False
    try:
        yield log
        ok = True
    finally:
        run.finish(exit_code=0 if ok else 1)


__all__ = ["MODES", "check", "open_run", "resolve_mode"]
