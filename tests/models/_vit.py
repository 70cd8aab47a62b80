"""Shared ViT test helpers: a tiny configuration, random parameters and a NumPy reference forward."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import erf

from modjax import models

# 2 blocks, D = 24 (3 heads of 8), MLP 96, on 8×8 images: 4 patch tokens (+ the class token).
KW = {"width": 0.125, "depth": 2, "num_classes": 5}
SHAPE = (8, 8, 3)
B = 3


def random_variables(model, shape=SHAPE, seed: int = 0) -> dict:
    """Random parameters filled on the host (no initializer compiles), activations O(1).

    Kernels N(0, 1/fan_in), biases and embeddings N(0, 0.3²), LayerNorm scales U(0.5, 1.5).
    """
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    abstract = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), x)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        key, s = path[-1].key, leaf.shape
        if key == "kernel":
            a = rng.normal(0.0, 1.0 / math.sqrt(max(math.prod(s[:-1]), 1)), s)
        elif key == "scale":
            a = rng.uniform(0.5, 1.5, s)
        else:  # biases, cls_token, pos_embed
            a = rng.normal(0.0, 0.3, s)
        return jnp.asarray(a, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, dict(abstract))


def images(seed: int = 1, shape=SHAPE, batch: int = B) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, *shape)), jnp.float32)


def _ln(x, p, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _dense(x, p):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def reference(params, x, *, patch: int, heads: int, pool: str = "cls", masks=None):
    """A float64 NumPy ViT forward, written from the architecture's description with loops.

    Returns `(logits [B, N], acts {unit: [B, units]})`; `masks` `{unit: [units] or [B, units]}`.
    """
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    masks = {k: np.asarray(v, np.float64) for k, v in (masks or {}).items()}
    x = np.asarray(x, np.float64)
    b, h, w, _ = x.shape
    patches = [
        x[:, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch, :].reshape(b, -1)
        for i in range(h // patch)
        for j in range(w // patch)
    ]
    z = _dense(np.stack(patches, axis=1), params["patch_embed"])
    if pool == "cls":
        z = np.concatenate([np.repeat(params["cls_token"], b, axis=0), z], axis=1)
    z = z + params["pos_embed"]
    acts, i = {}, 0
    while f"block_{i}" in params:
        p = params[f"block_{i}"]
        y = _ln(z, p["ln1"])
        q, k, v = (_dense(y, p["attn"][n]) for n in ("query", "key", "value"))
        n_heads = q.shape[-1] // (z.shape[-1] // heads)
        d = z.shape[-1] // heads
        mask = masks.get(f"block{i}.attn", np.ones(n_heads))
        mask = np.broadcast_to(mask, (b, n_heads))
        ctx, norms = [], []
        for hd in range(n_heads):
            s = slice(hd * d, (hd + 1) * d)
            scores = q[..., s] @ np.swapaxes(k[..., s], 1, 2) / math.sqrt(d)
            att = np.exp(scores - scores.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            c = (att @ v[..., s]) * mask[:, hd, None, None]
            ctx.append(c)
            norms.append(np.linalg.norm(c, axis=-1).mean(axis=1))
        acts[f"block{i}.attn"] = np.stack(norms, axis=1)
        z = z + _dense(np.concatenate(ctx, axis=-1), p["attn"]["out"])
        a = _dense(_ln(z, p["ln2"]), p["mlp"]["fc1"])
        a = 0.5 * a * (1.0 + erf(a / math.sqrt(2.0)))
        if f"block{i}.mlp" in masks:
            m = masks[f"block{i}.mlp"]
            a = a * (m[:, None, :] if m.ndim == 2 else m)
        acts[f"block{i}.mlp"] = np.abs(a).mean(axis=1)
        z = z + _dense(a, p["mlp"]["fc2"])
        i += 1
    z = _ln(z, params["ln"])
    pooled = z[:, 0] if pool == "cls" else z.mean(axis=1)
    return _dense(pooled, params["head"]), acts


def model(name: str = "vit_tiny", **kwargs):
    return models.get_model(name, **{**KW, **kwargs})


def run(m, variables, x, masks=None):
    """`m.apply(variables, x, masks=masks)` under `jit`: one compile beats ~60 eager op compiles."""
    return jax.jit(lambda v, x, masks: m.apply(v, x, masks=masks))(variables, x, masks)
