"""A composed classifier as one file that runs with only `pip install jax flatbuffers`.

Any composition exports, whatever families its scorers come from. `export_composed` lowers
`compose.pure_apply(composed)` with `jax.export` (serialized StableHLO,
symbolic batch dimension `b`) and writes a zip::

    exported.bin   jax.export serialization of  f(params, images float32 [b, H, W, C]) -> logits
    params.npz     the parameters, arr_0 ... arr_{n-1} in the order `f` takes them (no pickle)
    meta.json      format, class ids, class names, sources, input shape, calibration flag

The images are raw pixel values (0–255) as float32; each parent's recorded test transform
(scale, resize, normalize) and any calibration run inside `f`. Loading needs no modjax and no
Flax, only `LOADER_REQUIREMENTS` (jax with its own dependencies, numpy among them, and
flatbuffers, which `jax.export.deserialize` imports; a test runs the loader with exactly these):
run `LOADER_SOURCE` (below, also `python -c` friendly), e.g.

    classify, meta = load_classifier("composed.modjax.zip")
    logits = classify(images)                # [B, len(meta["classes"])]
    predicted_ids = np.asarray(meta["classes"])[logits.argmax(-1)]
"""

import io
import json
import os
import pathlib
import zipfile
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.modules import atomic
from modjax.modules.compose import Composed, pure_apply

LOADER_REQUIREMENTS = ("jax", "flatbuffers")
"""What `pip install` needs for `LOADER_SOURCE` (numpy comes with jax)."""

FORMAT = "modjax.composed"
FORMAT_VERSION = 1

LOADER_SOURCE = '''\
import io, json, zipfile
import jax, numpy as np

def load_classifier(path):
    """(classify(images float32 [B, H, W, C] raw 0-255) -> logits [B, K], meta) of an export."""
    with zipfile.ZipFile(path) as z:
        exported = jax.export.deserialize(bytearray(z.read("exported.bin")))
        npz = np.load(io.BytesIO(z.read("params.npz")), allow_pickle=False)
        params = tuple(npz[f"arr_{i}"] for i in range(len(npz.files)))
        meta = json.loads(z.read("meta.json"))
    return (lambda images: exported.call(params, np.asarray(images, np.float32))), meta
'''
"""The standalone loader: needs `LOADER_REQUIREMENTS` only (no modjax, no Flax)."""


def load_classifier(path: str | os.PathLike):
    """Loads an exported classifier with `LOADER_SOURCE` (the same code users copy)."""
    namespace: dict[str, Any] = {}
    exec(LOADER_SOURCE, namespace)  # noqa: S102 - our own constant source, executed as shipped
    return namespace["load_classifier"](path)


def export_composed(
    composed: Composed,
    path: str | os.PathLike,
    *,
    input_shape: Sequence[int],
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
    platforms: Sequence[str] | None = None,
) -> pathlib.Path:
    """Writes `composed` as one self-contained file (see the module docstring).

    Args:
        composed: from `compose.compose` / `compose.calibrate`.
        path: the output file; it must not exist unless `overwrite`.
        input_shape: one raw image's shape `(H, W, C)` (the input of `composed.apply_fn`).
        class_names: one name per output (default: the output ids as strings).
        overwrite: replace an existing file.
        platforms: `jax.export` lowering platforms (default: the default backend's), e.g.
            `("cpu", "cuda")` for a file that runs on either.

    Returns:
        The path written (atomically: a temporary file renamed into place).

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        ValueError: a bad `input_shape` or a `class_names` of the wrong length.
    """
    target = pathlib.Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape={tuple(input_shape)!r} must be (H, W, C) of positive ints")
    names = [str(c) for c in composed.classes] if class_names is None else list(class_names)
    if len(names) != len(composed.classes):
        raise ValueError(
            f"class_names has {len(names)} entries; the composition has "
            f"{len(composed.classes)} outputs {list(composed.classes)}"
        )
    fn, variables = pure_apply(composed)
    leaves, treedef = jax.tree.flatten(variables)
    leaves = [np.asarray(x) for x in leaves]

    def flat_fn(params, images):
        return fn(jax.tree.unflatten(treedef, list(params)), images)

    (b,) = jax.export.symbolic_shape("b")
    specs = (
        tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves),
        jax.ShapeDtypeStruct((b, *shape), jnp.float32),
    )
    kwargs = {} if platforms is None else {"platforms": tuple(platforms)}
    exported = jax.export.export(jax.jit(flat_fn), **kwargs)(*specs)
    buf = io.BytesIO()
    np.savez(buf, *leaves)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "classes": [int(c) for c in composed.classes],
        "class_names": names,
        "sources": [[d, int(c)] for d, c in composed.sources],
        "input_shape": list(shape),
        "input": "float32 [B, H, W, C] raw pixel values 0-255",
        "calibrated": composed.calibration is not None,
        "members": [
            {
                "method": g.method,
                "model": g.parent.get("model"),
                "dataset": g.parent.get("dataset"),
                "hash": g.parent.get("hash"),
                "classes": [int(c) for c in g.classes],
            }
            for g in composed.groups
        ],
        "platforms": list(exported.platforms),
        "jax_version": jax.__version__,
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("exported.bin", bytes(exported.serialize()))
        z.writestr("params.npz", buf.getvalue())
        z.writestr("meta.json", json.dumps(meta, indent=2))
    atomic.write_bytes(target, archive.getvalue())
    return target


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LOADER_REQUIREMENTS",
    "LOADER_SOURCE",
    "export_composed",
    "load_classifier",
]
