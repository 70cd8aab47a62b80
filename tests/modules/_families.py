"""One saved module per family, on the embedded digits' shape (8×8×1), for the contract tests.

Each builder returns the module directory of its family, cut from a parent with seeded random
weights: what the module layer promises does not depend on how well the parent was trained.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from modjax import data, models
from modjax import decompose as dc
from modjax import modular as mz
from modjax.deeparc import network, surgery
from modjax.modular import io as module_io
from modjax.modular import portable
from modjax.modules import identity, transform

SHAPE = (8, 8, 1)  # digits
SPEC = transform.preprocess_spec(data.get_info("digits"), normalize=True, image_size=None)
NAMES = [str(i) for i in range(10)]


def _parent(name: str, seed: int, **kw):
    kw = {"num_classes": 10, **kw}
    model = models.get_model(name, **kw)
    v = model.init(jax.random.key(seed), jnp.zeros((1, *SHAPE)), train=False)
    v = jax.device_get(dict(v))
    parent = identity.describe_parent(
        name, dataset="digits", input_shape=SHAPE, step=1, hash=identity.parent_hash(v), **kw
    )
    return model, v, parent


def modular_module(root: pathlib.Path, cls: int = 3, seed: int = 0) -> pathlib.Path:
    """A MODA module of an MLP (kept-unit weights, as `modjax modularize` writes it)."""
    model, v, parent = _parent("mlp", seed, depth=2)
    points = models.mask_points(model, input_shape=SHAPE)
    rng = np.random.default_rng(seed)
    keep = {n: rng.random(c) < 0.5 for n, c in points.items()}
    for k in keep.values():
        k[0] = True
    module = mz.Module(keep, (cls,), parent, "moda", 0.9, (), {"kernel_rate": 0.5})
    units = portable.kept_units(
        "mlp", parent["model_kwargs"], v, keep, classes=[cls], method="moda", input_shape=SHAPE
    )
    return module_io.save_module(
        module,
        root / f"moda_class_{cls}",
        arrays={"units": units.values, "unit_index": units.index},
        info={"preprocess": SPEC, "class_names": [NAMES[cls]]},
    )


def panrajan_module(root: pathlib.Path, cls: int = 5, seed: int = 1) -> pathlib.Path:
    """A dense Pan & Rajan module of an MLP: the parent with edges removed and a channelled head."""
    _, v, parent = _parent("mlp", seed, depth=2)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(np.asarray, v["params"])
    params = {
        name: {**p, "kernel": np.where(rng.random(p["kernel"].shape) < 0.7, p["kernel"], 0.0)}
        for name, p in params.items()
    }
    m = dc.DenseModule(
        params=params,
        masks=dc.dense.module.edge_masks(params),
        class_id=cls,
        parent=parent,
        settings={"ti": "sne", "cm": "rie", "confidence": 0.9},
        metrics=dc.sizes(params),
    )
    return dc.save_decomposed(
        m, root / f"panrajan_class_{cls}", preprocess=SPEC, class_names=[NAMES[cls]]
    )


def deeparc_network(root: pathlib.Path, classes=(7, 8), seed: int = 2) -> pathlib.Path:
    """A CIFAR ResNet-v1 with one block removed, as `modjax shrink --remove 1` saves it,
    scoring `classes`."""
    model, v, parent = _parent("resnet_cifar", seed, depth=14, width=0.25)
    small, sv = surgery.remove_blocks(model, v, [1])
    return network.save_network(
        root / "deeparc_network",
        model_name="resnet_cifar",
        model=small,
        variables=sv,
        parent=parent,
        preprocess=SPEC,
        class_names=NAMES,
        operation={"operation": "shrink", "removed": [1]},
        classes=classes,
    )


BUILDERS = {"modular": modular_module, "panrajan": panrajan_module, "deeparc": deeparc_network}
