"""Multi-process start-up: `jax.distributed.initialize` from flags, environment or auto-detection.

`modjax train --distributed` calls `initialize` before any device is touched. Each setting comes
from its flag, else from the environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID`), else from JAX's cluster auto-detection (Cloud TPU, SLURM, Open MPI), which
needs none of them.

A misconfigured start never hangs and never ends in XLA's C++ abort (which JAX gives after its
300 s `initialization_timeout`). Within `timeout_s` (`--coordinator-timeout`, default
`DEFAULT_TIMEOUT_S` = 60 s), `initialize` either returns or stops the process with one line
naming the address and what to check:

- a process other than 0 first waits for the coordinator's port to accept a TCP connection
  (`wait_for_coordinator`): nobody listening there is "did not answer within 60 s";
- process 0 first checks that it can listen on the coordinator's port (`check_port_free`);
- then a watchdog covers `jax.distributed.initialize` itself (processes missing, ids given
  twice): if it has not returned by the deadline, the process writes the message to stderr and
  exits with status `EXIT_TIMEOUT` (the C++ client cannot be interrupted from Python).

`check_shared_workdir` then makes sure every process sees the same `--workdir` before the first
checkpoint, whose commit would otherwise wait forever for files on another host's disk.
"""

import errno
import logging
import os
import pathlib
import random
import socket
import sys
import threading
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)

ENV = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


def _int(name: str, value: str | int | None, source: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} from {source} is not an integer") from None


AUTO_DETECT = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "TPU_WORKER_HOSTNAMES")
"""Environment variables of the clusters `jax.distributed.initialize` configures itself on."""


def _address(value: str, source: str) -> str:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"coordinator address {value!r} from {source}: expected HOST:PORT with a port in "
            "1..65535, e.g. 10.0.0.1:1234"
        )
    return str(value)


def stray_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The `JAX_*` multi-process variables set in the environment (they act only with
    `--distributed`; the CLI warns when they are set without it)."""
    env = os.environ if environ is None else environ
    return [v for v in ENV.values() if env.get(v)]


def settings(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str | int]:
    """The `jax.distributed.initialize` keyword arguments: flags first, then the environment.

    Raises:
        ValueError: a non-integer count or id, a coordinator address without a port, a process
            id outside `[0, num_processes)`, or fewer than the three settings when no cluster
            environment (`AUTO_DETECT`) lets JAX detect the rest, naming the missing ones.

    Example:
        >>> settings(environ={"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
        ...                   "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
        {'coordinator_address': '10.0.0.1:1234', 'num_processes': 2, 'process_id': 1}
    """
    env = os.environ if environ is None else environ
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    out: dict[str, str | int] = {}
    for key, value in given.items():
        source = f"--{key.replace('_', '-')}".replace("-address", "")
        if value is None and env.get(ENV[key]):
            value, source = env[ENV[key]], ENV[key]
        if value is None:
            continue
        if key == "coordinator_address":
            out[key] = _address(value, source)
        else:
            out[key] = _int(key, value, source)
    n, i = out.get("num_processes"), out.get("process_id")
    if n is not None and n < 1:
        raise ValueError(f"num_processes={n} must be >= 1")
    if n is not None and i is not None and not 0 <= i < n:
        raise ValueError(f"process_id={i} must be in [0, num_processes={n})")
    if len(out) < len(given) and not any(env.get(v) for v in AUTO_DETECT):
        missing = [
            f"--{k.replace('_address', '').replace('_', '-')} (or {ENV[k]})"
            for k in given
            if k not in out
        ]
        raise ValueError(
            f"--distributed needs {', '.join(missing)}: nothing here (no SLURM, MPI or TPU "
            "environment) can detect them"
        )
    return out


DEFAULT_TIMEOUT_S = 60.0
"""How long a process waits for the others at start-up before it stops with a message."""

EXIT_TIMEOUT = 2
"""The exit status of a process stopped by the start-up watchdog (the CLI's error status)."""


class CoordinatorError(RuntimeError):
    """The coordinator cannot be reached, or its port cannot be opened by process 0."""


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_s: float) -> float:
    """Waits until `address` accepts a TCP connection; returns the seconds waited.

    Process 0 may start after the others, so refused connections are retried until the
    deadline.

    Raises:
        CoordinatorError: nothing accepted a connection within `timeout_s`, naming the address,
            the last socket error and what to check.
    """
    host, port = _host_port(address)
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, left))):
                return time.monotonic() - start
        except OSError as e:
            last = e
        if time.monotonic() + 0.25 >= deadline:
            raise CoordinatorError(
                f"the coordinator {address} did not answer within {timeout_s:g} s ({last}). "
                "Start process 0 (it listens there), check the host and port given to every "
                "process, or raise --coordinator-timeout"
            )
        time.sleep(0.25)


def check_port_free(address: str) -> None:
    """Process 0's check that it can listen on the coordinator's port.

    Raises:
        CoordinatorError: the port is taken (another run's coordinator, or another program).
    """
    _, port = _host_port(address)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise CoordinatorError(
                f"process 0 cannot listen on the coordinator port {port} of {address}: it is in "
                "use (another run's coordinator?). Choose a free port for --coordinator"
            ) from None


def _watchdog(timeout_s: float, message: str) -> threading.Event:
    """Exits the process with `message` unless the returned event is set within `timeout_s`."""
    done = threading.Event()

    def fire():
        if not done.wait(timeout_s):
            print(f"modjax: error: {message}", file=sys.stderr, flush=True)
            os._exit(EXIT_TIMEOUT)

    threading.Thread(target=fire, name="modjax-start-watchdog", daemon=True).start()
    return done


def initialize(*, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs) -> None:
    """Calls `jax.distributed.initialize` with `settings(**kwargs)` (auto-detection if empty),
    stopping with a message within `timeout_s` seconds instead of hanging (module docstring).

    Raises:
        ValueError: bad settings (`settings`) or a non-positive `timeout_s`.
        CoordinatorError: the coordinator did not answer, or process 0 cannot open its port.
    """
    import jax

    if not timeout_s > 0:
        raise ValueError(f"--coordinator-timeout {timeout_s!r} must be > 0 seconds")
    found = settings(**kwargs)
    address = found.get("coordinator_address")
    deadline = time.monotonic() + timeout_s
    if address and found.get("process_id") == 0:
        check_port_free(str(address))
    elif address:
        wait_for_coordinator(str(address), timeout_s)
    left = max(1.0, deadline - time.monotonic())
    logger.info("jax.distributed.initialize(%s)", found or "auto-detect")
    n = found.get("num_processes", "all")
    done = _watchdog(
        left,
        f"jax.distributed.initialize did not finish within {timeout_s:g} s: not all {n} "
        f"processes joined the coordinator {address or '(auto-detected)'}. Start every process "
        "with the same --coordinator and --num-processes and its own --process-id, or raise "
        "--coordinator-timeout",
    )
    try:  # JAX's own timeout (a C++ abort) lies beyond the watchdog's
        jax.distributed.initialize(**found, initialization_timeout=int(left) + 30)
    finally:
        done.set()


SHARED_CHECK = ".modjax-shared-check"
"""The folder under the workdir where `check_shared_workdir` leaves its marker files briefly."""


def check_shared_workdir(workdir: str | os.PathLike) -> None:
    """Stops every process, with one message, unless all of them see one shared `workdir`.

    Orbax commits a checkpoint from all processes into one directory; processes given different
    `--workdir`s (or one path on host-local disks) would wait forever at the first checkpoint.
    Each process writes a marker named by a token from process 0, all meet at a barrier, and each
    lists whose markers it sees; the answers are gathered so that all stop together. A no-op
    with one process.

    Raises:
        ValueError: some process does not see another's marker, naming which.
    """
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    n, me = jax.process_count(), jax.process_index()
    if n == 1:
        return
    token = int(multihost_utils.broadcast_one_to_all(np.int32(random.getrandbits(31))))
    folder = pathlib.Path(workdir) / SHARED_CHECK
    folder.mkdir(parents=True, exist_ok=True)
    mine = folder / f"{token}-{me}"
    mine.write_text(str(pathlib.Path(workdir).absolute()))
    multihost_utils.sync_global_devices("modjax-shared-workdir-written")
    seen = np.array([(folder / f"{token}-{i}").is_file() for i in range(n)], np.int32)
    every = np.asarray(multihost_utils.process_allgather(seen)).reshape(n, n)
    mine.unlink(missing_ok=True)
    multihost_utils.sync_global_devices("modjax-shared-workdir-checked")
    try:  # by every process: on separate disks each has its own folder
        folder.rmdir()
    except OSError:  # another process removed it first
        pass
    if not every.all():
        blind = [
            f"process {i} does not see the files of process(es) "
            f"{[j for j in range(n) if not every[i, j]]}"
            for i in range(n)
            if not every[i].all()
        ]
        raise ValueError(
            f"--workdir {workdir} is not one shared directory for all {n} processes: "
            f"{'; '.join(blind)}. Give every process the same --workdir on a file system all "
            "hosts share (checkpoints are written by all processes together)"
        )
