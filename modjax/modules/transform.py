"""A module's input transform as a JSON record, and back: what every family's module applies.

A module directory records the test transform of its parent's dataset (`preprocess_spec`), so it
can be evaluated and composed without the parent's workdir; `input_transform` rebuilds the
function. The recorded image shape, mean and std win over the dataset registry's.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from modjax import data


def preprocess_spec(info, *, normalize: bool, image_size: int | None) -> dict[str, Any]:
    """The JSON record of a dataset's test transform (`data.make_preprocess` arguments)."""
    return {
        "dataset": info.name,
        "image_shape": [int(d) for d in info.image_shape],
        "image_size": image_size,
        "normalize": bool(normalize),
        "mean": [float(m) for m in info.mean],
        "std": [float(s) for s in info.std],
    }


def input_transform(spec: Mapping[str, Any], *, augment: bool = False):
    """`preprocess(images, rng) -> float32` from a `preprocess_spec` record.

    The recorded image shape, mean and std override the registry's, so a saved module keeps its
    input transform if the registry changes; `augment=True` adds the dataset's train-time
    augmentation (MwT task-module fine-tuning).
    """
    info = dataclasses.replace(
        data.get_info(spec["dataset"]),
        image_shape=tuple(spec["image_shape"]),
        mean=tuple(spec["mean"]),
        std=tuple(spec["std"]),
    )
    return data.make_preprocess(
        info, augment=augment, normalize=spec["normalize"], image_size=spec["image_size"]
    )


def describe_transform(spec: Mapping[str, Any]) -> str:
    """One line naming what a transform does to the raw images, for messages."""
    size = spec.get("image_size")
    steps = [f"raw {tuple(spec['image_shape'])} of {spec['dataset']!r}"]
    if size:
        steps.append(f"resized to {size}x{size}")
    steps.append("normalized" if spec.get("normalize") else "scaled to [0, 1]")
    return ", ".join(steps)


def eval_transform(spec: Mapping[str, Any]):
    """`x -> float32` of a module's recorded test transform (no augmentation, fixed key): the
    `preprocess` its scorer applies to raw pixels inside a composition."""
    fn = input_transform(spec)
    return lambda x: fn(x, jax.random.PRNGKey(0))


__all__ = ["describe_transform", "input_transform", "preprocess_spec", "eval_transform"]
