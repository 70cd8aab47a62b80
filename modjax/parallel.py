"""Data parallelism as `jax.jit` over a device `Mesh`: batch sharded on "data", state replicated."""

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (all, by default) with axis "data".

    Args:
        num_devices: how many devices to use; `None` means `jax.device_count()` (every device of
            every process).

    Returns:
        A `Mesh` with one axis named `"data"` of `Auto` type.

    Raises:
        ValueError: `num_devices` is not in `[1, jax.device_count()]`, or is not the full device
            count in a multi-process run.
    """
    total = jax.device_count()
    num_devices = total if num_devices is None else num_devices
    if not 1 <= num_devices <= total:
        raise ValueError(
            f"num_devices={num_devices} must be between 1 and the device count ({total})"
        )
    if jax.process_count() > 1 and num_devices != total:
        raise ValueError(
            f"num_devices={num_devices}: a multi-process run must use every device ({total})"
        )
    devices = np.asarray(jax.devices()[:num_devices])
    return Mesh(devices, (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of state that every device holds whole (params, optimizer state)."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: leading axis split over the "data" axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Returns the per-process batch size, after checking the global one divides evenly.

    Raises:
        ValueError: `global_batch_size` is not a positive multiple of the mesh size, or of the
            process count.
    """
    num_devices = mesh.devices.size
    if global_batch_size <= 0 or global_batch_size % num_devices:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of the device "
            f"count ({num_devices})"
        )
    if global_batch_size % jax.process_count():
        raise ValueError(
            f"global_batch_size={global_batch_size} must be divisible by the process count "
            f"({jax.process_count()})"
        )
    return global_batch_size // jax.process_count()


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Builds global device arrays from this process's slice of the batch.

    Each process passes only its own rows (`local_batch_size = global_batch_size //
    process_count`); the result is one global `jax.Array` per key, sharded on "data".
    """
    sharding = batch_sharding(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in batch.items()
    }


def replicate(tree, mesh: Mesh):
    """Places a host pytree on every device of `mesh` (replicated)."""
    return jax.device_put(tree, replicated(mesh))
