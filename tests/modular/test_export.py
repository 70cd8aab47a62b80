"""`modular.export`: a composed classifier as one file that runs with jax and flatbuffers alone."""

import functools
import json
import subprocess
import sys
import textwrap
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import data, models
from modjax import modular as mz
from modjax.modular import compose as cp
from modjax.modules import export, transform

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def composed():
    kw = {"num_classes": 10, "depth": 2}
    model = models.get_model("mlp", **kw)
    v = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    parent = mz.describe_parent("mlp", dataset="digits", input_shape=SHAPE, **kw)
    points = models.mask_points(model, input_shape=SHAPE)
    rng = np.random.default_rng(0)
    modules = []
    for c in (2, 7):
        keep = {n: rng.random(k) < 0.5 for n, k in points.items()}
        modules.append(mz.Module(keep, (c,), parent, "moda", 0.9, (), {}))
    spec = transform.preprocess_spec(data.get_info("digits"), normalize=True, image_size=None)
    key = cp.parent_key(parent)
    pre = functools.partial(transform.input_transform(spec), rng=jax.random.PRNGKey(0))
    out = cp.compose(
        modules, {key: v}, preprocess_by_parent={key: pre}, relabel={("digits", 7): 17}
    )
    lo, hi = np.array([-1.0, -2.0], np.float32), np.array([1.0, 3.0], np.float32)
    return cp.calibrate(out, {key: (lo, hi)})


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE)).astype(np.float32)


def test_export_runs_without_modjax_in_a_subprocess(tmp_path, composed):
    path = export.export_composed(
        composed, tmp_path / "c.zip", input_shape=SHAPE, class_names=["two", "seven"]
    )
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["exported.bin", "meta.json", "params.npz"]
        meta = json.loads(z.read("meta.json"))
    assert meta["classes"] == [2, 17] and meta["class_names"] == ["two", "seven"]
    assert meta["calibrated"] and meta["input_shape"] == list(SHAPE)
    for n in (3, 5):  # symbolic batch: any size
        np.save(tmp_path / f"x{n}.npy", _images(n, seed=n))
    script = export.LOADER_SOURCE + textwrap.dedent(f"""
        import sys
        classify, meta = load_classifier({str(path)!r})
        for n in (3, 5):
            x = np.load({str(tmp_path)!r} + f"/x{{n}}.npy")
            np.save({str(tmp_path)!r} + f"/y{{n}}.npy", np.asarray(classify(x)))
        assert "modjax" not in sys.modules and "flax" not in sys.modules, "imported modjax/flax"
        print("ok", meta["classes"])
    """)
    run = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "ok [2, 17]" in run.stdout
    for n in (3, 5):
        expected = np.asarray(composed.apply_fn(jnp.asarray(_images(n, seed=n))))
        np.testing.assert_allclose(np.load(tmp_path / f"y{n}.npy"), expected, rtol=1e-6, atol=1e-6)


def _site_with(distributions, root):
    """A site directory holding only `distributions` (links to their installed top-level
    packages): what `pip install` of exactly those would give, offline."""
    import importlib.metadata as md
    import pathlib

    site = pathlib.Path(root)
    site.mkdir()
    for name in distributions:
        dist = md.distribution(name)
        base = pathlib.Path(dist.locate_file(""))
        for top in {pathlib.PurePath(f).parts[0] for f in dist.files or ()}:
            if top != ".." and (base / top).exists() and not (site / top).exists():
                (site / top).symlink_to(base / top)
    return site


def test_the_loader_needs_exactly_jax_and_flatbuffers(tmp_path, composed):
    """`pip install jax flatbuffers` (jax's own requirements included) runs an export; without
    flatbuffers, `jax.export.deserialize` refuses. No modjax, Flax, optax or site-packages."""
    import importlib.metadata as md
    import re

    path = export.export_composed(composed, tmp_path / "c.zip", input_shape=SHAPE)
    jax_deps = [
        re.split(r"[<>=!~; \[]", r)[0] for r in md.requires("jax") or () if "extra ==" not in r
    ]
    assert export.LOADER_REQUIREMENTS == ("jax", "flatbuffers")
    x = _images(4)
    np.save(tmp_path / "x.npy", x)
    script = export.LOADER_SOURCE + textwrap.dedent(f"""
        import sys
        classify, meta = load_classifier({str(path)!r})
        np.save({str(tmp_path)!r} + "/y.npy", np.asarray(classify(np.load({str(tmp_path)!r} + "/x.npy"))))
        print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"modjax", "flax", "optax"}}))
    """)  # fmt: skip
    for name, dists in (("full", ["jax", *jax_deps, "flatbuffers"]), ("bare", ["jax", *jax_deps])):
        site = _site_with(dists, tmp_path / name)
        run = subprocess.run(
            [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n"
             + script],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        if name == "full":
            assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr[-2000:]
            expected = np.asarray(composed.apply_fn(jnp.asarray(x)))
            np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6, atol=1e-6)
        else:
            assert run.returncode != 0 and "install 'flatbuffers'" in run.stderr, run.stderr[-2000:]


def test_in_process_loader_and_refusals(tmp_path, composed):
    path = export.export_composed(composed, tmp_path / "c.zip", input_shape=SHAPE)
    classify, meta = export.load_classifier(path)
    assert meta["class_names"] == ["2", "17"]
    x = _images(4)
    np.testing.assert_allclose(classify(x), composed.apply_fn(jnp.asarray(x)), atol=1e-6)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        export.export_composed(composed, path, input_shape=SHAPE)
    assert path.read_bytes() == before
    export.export_composed(composed, path, input_shape=SHAPE, overwrite=True)
    with pytest.raises(ValueError, match="class_names has 1 entries"):
        export.export_composed(composed, tmp_path / "d.zip", input_shape=SHAPE, class_names=["x"])
    with pytest.raises(ValueError, match=r"input_shape=\(8, 8\)"):
        export.export_composed(composed, tmp_path / "d.zip", input_shape=(8, 8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zip"]
