"""Every family's module passes the same checks (optax `contrib/_common_test.py` pattern):
round trip, tamper detection, parent-hash identity, scorer shape, composition with a module of
another family, and export."""

import json

import jax
import numpy as np
import pytest

from modjax.modules import directory, export, identity, registry
from modjax.runs import compose as run_compose
from tests.modules import _families

FAMILIES = sorted(_families.BUILDERS)
# A partner of another family with classes disjoint from each family's module.
PARTNER = {"modular": "panrajan", "panrajan": "deeparc", "deeparc": "modular"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build(root) for name, build in _families.BUILDERS.items()}


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 17, (n, *_families.SHAPE)).astype(np.float32)


def test_every_family_is_registered():
    assert set(FAMILIES) <= set(registry.families())
    owners = [m for fam in registry.families().values() for m in fam.methods]
    assert len(owners) == len(set(owners))  # one family per method


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip(saved, family):
    d = directory.load(saved[family])
    assert registry.family_of(d.method).name == family
    assert d.format_version == directory.FORMAT_VERSION
    assert d.parent["hash"].startswith("sha256:") and d.parent["dataset"] == "digits"
    manifest = json.loads((saved[family] / directory.MANIFEST).read_text())
    assert manifest["classes"] == list(d.classes)


@pytest.mark.parametrize("family", FAMILIES)
def test_tampering_is_refused(saved, family, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(saved[family], copy)
    victim = sorted(p for p in copy.rglob("*.npy"))[0]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(directory.ModuleFileError, match=r"was edited or damaged"):
        run_compose.load_dirs([copy])


@pytest.mark.parametrize("family", FAMILIES)
def test_scorer_shape_and_parent_identity(saved, family):
    d = directory.load(saved[family])
    (s,) = registry.family_of(d.method).scorers([d])
    assert s.key == identity.parent_key(d.parent) and s.classes == d.classes
    x = s.preprocess(_images())
    scores = np.asarray(jax.jit(s.score_fn)(s.variables, x))
    assert scores.shape == (12, len(d.classes)) and np.isfinite(scores).all()
    assert s.size["params"] > 0 and s.size["parent_params"] > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_another_hash_is_another_parent(saved, family, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(saved[family], other)
    path = other / directory.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["parent"]["hash"] = "sha256:" + "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(directory.ModuleFileError, match=r"manifest\.json was edited"):
        run_compose.load_dirs([other])  # unsealed edit: refused
    sums = (other / directory.SUMS).read_text().splitlines()
    digest = directory._sha256(path)
    (other / directory.SUMS).write_text(
        "".join(
            f"{digest}  {directory.MANIFEST}\n" if ln.endswith(directory.MANIFEST) else ln + "\n"
            for ln in sums
        )
    )
    # Resealed: a module of another parent, so the same class from both parents is refused,
    # naming both modules and the class.
    c = directory.load(saved[family]).classes[0]
    with pytest.raises(ValueError, match=rf"class {c} of dataset 'digits' is claimed twice"):
        run_compose.build_composition(run_compose.load_dirs([saved[family], other]))


@pytest.mark.parametrize("family", FAMILIES)
def test_composes_with_another_family_and_exports(saved, family, tmp_path):
    dirs = [saved[family], saved[PARTNER[family]]]
    composed, _ = run_compose.build_composition(run_compose.load_dirs(dirs))
    methods = {g.method for g in composed.groups}
    assert len(methods) == 2
    x = _images()
    scores = np.asarray(composed.apply_fn(x))
    expected = sum(len(directory.load(d).classes) for d in dirs)
    assert scores.shape == (12, expected) and len(composed.classes) == expected
    path = export.export_composed(composed, tmp_path / "c.zip", input_shape=_families.SHAPE)
    classify, meta = export.load_classifier(path)
    np.testing.assert_allclose(np.asarray(classify(x)), scores, rtol=1e-5, atol=1e-5)
    assert {m["method"] for m in meta["members"]} == methods
