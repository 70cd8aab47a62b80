"""Multi-process start-up: `jax.distributed.initialize` from flags, environment or auto-detection.

`modjax train --distributed` calls `initialize` before any device is touched. Each setting comes
from its flag, else from the environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID`), else from JAX's cluster auto-detection (Cloud TPU, SLURM, Open MPI), which
needs none of them.
"""

import logging
import os
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


def initialize(**kwargs) -> None:
    """Calls `jax.distributed.initialize` with `settings(**kwargs)` (auto-detection if empty)."""
    import jax

    found = settings(**kwargs)
    logger.info("jax.distributed.initialize(%s)", found or "auto-detect")
    jax.distributed.initialize(**found)
