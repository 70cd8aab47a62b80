"""Module directories (format 2): round trip, travelling composition, and every corruption."""

import functools
import hashlib
import json
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import data, models
from modjax import modular as mz
from modjax.modular import compose as cp
from modjax.modular import family as modular_family
from modjax.modular import io as module_io
from modjax.modular import portable
from modjax.modules import identity, transform
from modjax.runs import compose as run_modules

SHAPE = (8, 8, 1)  # digits
N = 10


def _parent(name, shape=SHAPE, **kw):
    kw = {"num_classes": N, **kw}
    model = models.get_model(name, **kw)
    v = model.init(jax.random.key(0), jnp.zeros((1, *shape)))
    v = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape), v)
    v = jax.device_get(v)
    method = "mwt" if kw.get("mask_generators") else "moda"
    parent = mz.describe_parent(name, dataset="digits", input_shape=shape, **kw)
    parent = {**parent, "step": 7, "hash": identity.parent_hash(v)}
    return model, v, parent, method


@pytest.fixture(scope="module")
def mlp():
    return _parent("mlp", depth=2)


def _keeps(model, method, seed, shape=SHAPE):
    points = models.mask_points(model, input_shape=shape)
    if method == "mwt":
        points = models.masked_layers(model, input_shape=shape)
    rng = np.random.default_rng(seed)
    keep = {n: rng.random(c) < 0.4 for n, c in points.items()}
    for k in keep.values():
        k[seed % len(k)] = True
    return dict(reversed(keep.items()))  # saving must restore forward order


def _save(tmp_path, parent_fixture, c, name=None):
    model, v, parent, method = parent_fixture
    shape = tuple(parent["input_shape"])
    keep = _keeps(model, method, c, shape)
    module = mz.Module(keep, (c,), parent, method, 0.9, (), {"kernel_rate": 0.5})
    classes = [c] if method == "moda" else None
    units = portable.kept_units(
        parent["model"],
        parent["model_kwargs"],
        v,
        keep,
        classes=classes,
        method=method,
        input_shape=shape,
    )
    size = None if shape == SHAPE else shape[0]
    spec = transform.preprocess_spec(data.get_info("digits"), normalize=True, image_size=size)
    info = {"preprocess": spec, "class_names": [f"digit {c}"]}
    path = module_io.save_module(
        module,
        tmp_path / (name or f"class_{c}"),
        arrays={"units": units.values, "unit_index": units.index},
        info=info,
    )
    return module, path


def _reseal(path):
    """Rewrites SHA256SUMS as a consistent forger would."""
    files = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    )
    lines = [f"{hashlib.sha256((path / f).read_bytes()).hexdigest()}  {f}\n" for f in files]
    (path / "SHA256SUMS").write_text("".join(lines))


def test_round_trip_forward_order_permissions(tmp_path, mlp):
    module, path = _save(tmp_path, mlp, 3)
    saved = module_io.load(path)
    forward = list(models.mask_points(mlp[0], input_shape=SHAPE))
    assert list(saved.module.keep) == forward != list(module.keep)
    manifest = json.loads((path / "manifest.json").read_text())
    assert [e["name"] for e in manifest["arrays"]["keep"]] == forward
    assert manifest["format_version"] == module_io.FORMAT_VERSION == 3
    assert manifest["parent"]["hash"].startswith("sha256:") and manifest["parent"]["step"] == 7
    for n in forward:
        np.testing.assert_array_equal(saved.module.keep[n], module.keep[n])
    for field in ("classes", "parent", "method", "threshold", "fallbacks", "metrics"):
        assert getattr(saved.module, field) == getattr(module, field), field
    assert saved.info["class_names"] == ["digit 3"]
    assert set(saved.arrays) == {"units", "unit_index"}
    listed = {line.split("  ")[1] for line in (path / "SHA256SUMS").read_text().splitlines()}
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert "manifest.json" in listed and listed == files - {"SHA256SUMS"}
    for p in [path, *path.rglob("*")]:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), p
    assert [p.name for p in tmp_path.iterdir()] == ["class_3"]
    with pytest.raises(FileExistsError, match="overwrite"):
        _save(tmp_path, mlp, 3)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("mlp", {"depth": 2}),
        ("lenet5", {"width": 0.5, "mask_generators": True, "shape": (16, 16, 1)}),
    ],
)
def test_saved_modules_compose_like_the_parent(tmp_path, name, kw):
    fixture = _parent(name, **kw)
    _, v, parent, _ = fixture
    mods, dirs = zip(*(_save(tmp_path, fixture, c) for c in (1, 4, 6)))
    composed, specs = run_modules.build_composition(run_modules.load_dirs(dirs))
    key = cp.parent_key(parent)
    pre = functools.partial(transform.input_transform(specs[key]), rng=jax.random.PRNGKey(0))
    reference = cp.compose(list(mods), {key: v}, preprocess_by_parent={key: pre})
    x = jax.random.randint(jax.random.key(3), (16, *SHAPE), 0, 256).astype(jnp.float32)
    np.testing.assert_array_equal(composed.apply_fn(x), reference.apply_fn(x))
    assert composed.classes == (1, 4, 6) and len(composed.groups) == 1
    # One module alone rebuilds its own pruned form exactly.
    one = module_io.load(dirs[0])
    m = one.module
    classes = list(m.classes) if m.method == "moda" else None
    shape = tuple(parent["input_shape"])
    model, pv = portable.rebuild(
        [modular_family.units_of(one)],
        parent["model"],
        parent["model_kwargs"],
        m.keep,
        classes=classes,
        method=m.method,
        input_shape=shape,
    )
    ref_model, ref_v = mz.prune.prune(
        parent["model"],
        parent["model_kwargs"],
        v,
        m.keep,
        classes=classes,
        method=m.method,
        input_shape=shape,
    )
    x = pre(x)
    np.testing.assert_array_equal(
        model.apply(pv, x, train=False)[0], ref_model.apply(ref_v, x, train=False)[0]
    )


def _edit_json(path, fn):
    manifest = json.loads((path / "manifest.json").read_text())
    fn(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _corrupt(case, path):
    if case == "missing file":
        (path / "units" / "00001.npy").unlink()
        return r"units/00001\.npy is missing"
    if case == "extra file":
        (path / "notes.txt").write_text("hi")
        return r"notes\.txt is not listed in .*SHA256SUMS"
    if case == "edited classes":
        _edit_json(path, lambda m: m.update(classes=[5]))
        return r"manifest\.json was edited"
    if case == "edited array":
        np.save(path / "keep" / "00000.npy", ~np.load(path / "keep" / "00000.npy"))
        return r"keep/00000\.npy was edited"
    if case == "other version":
        _edit_json(path, lambda m: m.update(format_version=1))
        return r"field 'format_version' is 1"
    if case == "missing key":
        _edit_json(path, lambda m: m.pop("classes"))
        _reseal(path)
        return r"manifest\.json lacks field 'classes'"
    if case == "missing parent key":
        _edit_json(path, lambda m: m["parent"].pop("hash"))
        _reseal(path)
        return r"field 'parent' lacks field 'hash'"
    if case == "missing sums":
        (path / "SHA256SUMS").unlink()
        return r"SHA256SUMS is missing"
    if case == "bad array entry":
        _edit_json(path, lambda m: m["arrays"]["keep"][0].pop("file"))
        _reseal(path)
        return r"field 'arrays\.keep' lacks field 'file'"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "extra file",
        "edited classes",
        "edited array",
        "other version",
        "missing key",
        "missing parent key",
        "missing sums",
        "bad array entry",
    ],
)
def test_corruption_is_a_clear_error(tmp_path, mlp, case):
    _, path = _save(tmp_path, mlp, 2)
    message = _corrupt(case, path)
    with pytest.raises(module_io.ModuleFileError, match=message):
        module_io.load(path)


def test_resealed_forgeries_are_caught(tmp_path, mlp):
    _, a = _save(tmp_path, mlp, 2)
    _, b = _save(tmp_path, mlp, 5)
    # A consistent edit of `classes` disagrees with the saved output units.
    _edit_json(a, lambda m: m.update(classes=[7]))
    _reseal(a)
    with pytest.raises(module_io.ModuleFileError, match=r"field 'classes' is \[7\]"):
        modular_family.units_of(module_io.load(a))
    # Same parent description, another hash: another parent (identity is the content hash),
    # so its class 5 beside the real parent's class 5 is a class claimed twice, naming both.
    _edit_json(b, lambda m: m["parent"].update(hash="sha256:" + "0" * 64))
    _reseal(b)
    _, c = _save(tmp_path / "real", mlp, 5)
    _, d = _save(tmp_path / "real", mlp, 6)
    composed, _ = run_modules.build_composition(run_modules.load_dirs([d, b]))
    assert len(composed.groups) == 2 and composed.classes == (6, 5)
    with pytest.raises(ValueError, match=r"class 5 of dataset 'digits' is claimed twice"):
        run_modules.build_composition(run_modules.load_dirs([c, b]))


def test_parent_hash_names_the_weights(mlp):
    _, v, _, _ = mlp
    h = identity.parent_hash(v)
    reordered = {"batch_stats": {}, "params": dict(reversed(list(v["params"].items())))}
    assert identity.parent_hash(reordered) == h
    bumped = jax.tree.map(lambda x: x, v)
    bumped["params"]["head"]["bias"] = bumped["params"]["head"]["bias"] + 1e-6
    assert identity.parent_hash(bumped) != h


def test_method_arrays_travel_and_interrupted_saves_leave_nothing(tmp_path, mlp, monkeypatch):
    model, _, parent, method = mlp
    module = mz.Module(_keeps(model, method, 1), (1,), parent, method, 0.9, (), {})
    edges = {"dense_0/kernel": np.ones((64, 49), bool), "head/kernel": np.zeros((49, N), bool)}
    path = module_io.save_module(
        module, tmp_path / "m", arrays={"edge_masks": edges}, info={"decompose": {"rule": "tanh"}}
    )
    saved = module_io.load(path)
    assert list(saved.arrays["edge_masks"]) == list(edges)
    assert saved.info["decompose"] == {"rule": "tanh"}
    with pytest.raises(ValueError, match="array group 'Keep!'"):
        module_io.save_module(module, tmp_path / "x", arrays={"Keep!": edges})
    # A killed save's hidden temporary is removed by the next save.
    stale = tmp_path / ".m.tmp-killed"
    stale.mkdir()
    real_save, calls = np.save, []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(module_io.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        module_io.save_module(module, path, arrays={"edge_masks": edges}, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert module_io.load(path).module.classes == (1,)


def test_units_are_listed_in_forward_layer_order():
    kw = {"num_classes": 10, "width": 0.125}
    shape = (32, 32, 3)
    model = models.get_model("vgg16", **kw)
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape))))
    v = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
    points = models.mask_points(model, input_shape=shape)
    keep = {n: np.arange(c) % 2 == 0 for n, c in points.items()}
    units = portable.kept_units("vgg16", kw, v, keep, classes=[1], method="moda", input_shape=shape)
    layers = list(dict.fromkeys(n.split("/")[1] for n in units.index))
    assert layers == [*points, "head"] and layers.index("conv_2") < layers.index("conv_10")
