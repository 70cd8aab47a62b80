"""The shared module directory: old formats, bad input named before any work."""

import json
import shutil

import numpy as np
import pytest

from modjax import data
from modjax.modular import io as module_io
from modjax.modules import directory, identity, jsonrules, transform
from modjax.runs import compose as run_compose
from tests.modules import _families


def _reseal(path):
    lines = []
    for line in (path / directory.SUMS).read_text().splitlines():
        digest, _, rel = line.partition("  ")
        lines.append(f"{directory._sha256(path / rel)}  {rel}\n")
    (path / directory.SUMS).write_text("".join(lines))


def _edit(path, fn):
    manifest = json.loads((path / directory.MANIFEST).read_text())
    fn(manifest)
    (path / directory.MANIFEST).write_text(json.dumps(manifest))
    _reseal(path)


@pytest.fixture()
def moda(tmp_path):
    return _families.modular_module(tmp_path)


def test_version_2_is_read_through_its_converter(moda, tmp_path):
    v3 = module_io.load(moda)
    old = tmp_path / "v2"
    shutil.copytree(moda, old)

    def to_v2(m):  # modjax before the shared layer kept these two fields at the top
        m["format_version"] = 2
        m["threshold"] = m["info"].pop("threshold")
        m["fallbacks"] = m["info"].pop("fallbacks")

    _edit(old, to_v2)
    v2 = module_io.load(old)
    assert directory.load(old).format_version == 2
    assert v2.module.threshold == v3.module.threshold == 0.9
    assert v2.module.classes == v3.module.classes and v2.info == v3.info
    for name in v3.module.keep:
        np.testing.assert_array_equal(v2.module.keep[name], v3.module.keep[name])
    x = np.random.default_rng(0).integers(0, 17, (4, *_families.SHAPE)).astype(np.float32)
    a, _ = run_compose.build_composition(run_compose.load_dirs([moda]))
    b, _ = run_compose.build_composition(run_compose.load_dirs([old]))
    np.testing.assert_array_equal(a.apply_fn(x), b.apply_fn(x))


@pytest.mark.parametrize("version", [1, 4, "2"])
def test_other_versions_name_the_file_the_version_and_the_command(moda, version):
    _edit(moda, lambda m: m.update(format_version=version))
    with pytest.raises(directory.ModuleFileError) as e:
        run_compose.load_dirs([moda])
    message = str(e.value)
    assert "manifest.json" in message and f"'format_version' is {version!r}" in message
    assert "modjax modularize" in message and "[2, 3]" in message


def test_unreconcilable_inputs_name_both_modules_and_shapes(moda, tmp_path):
    cifar = transform.preprocess_spec(data.get_info("cifar10"), normalize=True, image_size=None)
    other = tmp_path / "cifar_module"
    shutil.copytree(moda, other)
    _edit(other, lambda m: m["info"].update(preprocess=cifar))
    with pytest.raises(ValueError) as e:
        run_compose.build_composition(run_compose.load_dirs([moda, other]))
    message = str(e.value)
    assert str(moda) in message and str(other) in message
    assert "(8, 8, 1)" in message and "(32, 32, 3)" in message
    assert "of 'digits'" in message and "of 'cifar10'" in message  # each one's transform


def test_a_method_no_family_reads_is_named(moda):
    _edit(moda, lambda m: m.update(method="nemo"))
    with pytest.raises(directory.ModuleFileError, match=r"'nemo' is not a registered .*known"):
        run_compose.load_dirs([moda])


def test_a_class_selection_must_be_the_modules(tmp_path):
    net = _families.deeparc_network(tmp_path)
    with pytest.raises(ValueError, match=r"classes \[7, 9\] must be distinct classes"):
        run_compose.load_dirs([f"{net}:7,9"])
    with pytest.raises(ValueError, match=r"after ':' give the classes"):
        run_compose.parse_dir(f"{tmp_path}/nope:x,y")
    (d,) = run_compose.load_dirs([f"{net}:8"])
    composed, _ = run_compose.build_composition([d], select=run_compose.selection([f"{net}:8"]))
    assert composed.classes == (8,)


def test_the_json_rule_and_identity():
    assert jsonrules.jsonable({"a": float("nan"), "b": np.int64(3)}) == {"a": None, "b": 3}
    with pytest.raises(TypeError, match=r"value\['f'\] has a value of type builtin_function"):
        jsonrules.jsonable({"f": len})
    parent = {"model": "mlp", "model_kwargs": {}, "dataset": "d", "hash": None, "step": 1}
    assert identity.parent_key(parent) != identity.parent_key({**parent, "step": 2})


def _save_tiny(path, **kw):
    parent = {"model": "mlp", "model_kwargs": {}, "input_shape": [2], "hash": "sha256:0", "step": 1}
    return directory.save(path, method="moda", classes=[0], parent=parent,
                          arrays={"keep": {"w": np.ones(3, np.float32)}}, **kw)  # fmt: skip


def test_signatures_under_modjax_module_key(tmp_path, monkeypatch):
    unsigned = _save_tiny(tmp_path / "unsigned")
    assert not (unsigned / directory.SIGNATURE).exists()
    monkeypatch.setenv(directory.KEY_ENV, "secret one")
    signed = _save_tiny(tmp_path / "signed")
    assert (signed / directory.SIGNATURE).read_text().startswith("hmac-sha256 ")
    assert directory.load(signed).classes == (0,)
    with pytest.raises(directory.ModuleFileError, match="unsigned.* is not signed .SIGNATURE "
                       "missing. and MODJAX_MODULE_KEY is set"):  # fmt: skip
        directory.load(unsigned)
    # A forger who edits the manifest and recomputes SHA256SUMS passes the sums, not the key.
    _edit(signed, lambda m: m.update(classes=[1]))
    with pytest.raises(directory.ModuleFileError, match="SIGNATURE does not match: .* signed "
                       "with another key than MODJAX_MODULE_KEY, or its SHA256SUMS was altered"):  # fmt: skip
        directory.load(signed)
    other = _save_tiny(tmp_path / "other")
    monkeypatch.setenv(directory.KEY_ENV, "secret two")
    with pytest.raises(directory.ModuleFileError, match="SIGNATURE does not match"):
        directory.load(other)
    monkeypatch.delenv(directory.KEY_ENV)  # without a key, signatures are neither needed nor read
    assert directory.load(other).classes == directory.load(unsigned).classes == (0,)
