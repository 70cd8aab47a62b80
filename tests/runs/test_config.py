"""Tests for modjax.runs.config: config files that build on a base config, and their errors."""

import re
import sys

import pytest

from modjax.modules import registry
from modjax.runs import config as config_lib
from tests.conftest import REPO

CONFIGS = REPO / "experiments" / "configs"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_config_imports_its_base_from_its_own_directory(tmp_path):
    path_before = list(sys.path)
    for name, width in (("a", 0.5), ("b", 2.0)):  # two directories, same base file name
        _write(tmp_path / name / "base.py", f"def get_config():\n    return {{'width': {width}}}\n")
        variant = _write(
            tmp_path / name / "variant.py",
            "from base import get_config as base_config\n\n\n"
            "def get_config():\n    return {**base_config(), 'seed': 3}\n",
        )
        assert config_lib.load_config_file(variant) == {"width": width, "seed": 3}
        assert "base" not in sys.modules
    assert sys.path == path_before


def test_shipped_variants_override_the_smoke_config():
    smoke = config_lib.load_config_file(CONFIGS / "smoke.py")
    moda = config_lib.load_config_file(CONFIGS / "smoke_moda.py")
    mwt = config_lib.load_config_file(CONFIGS / "smoke_mwt.py")
    assert moda == {**smoke, "method": "moda"}
    assert mwt == {**smoke, "model": "lenet5", "depth": None, "method": "mwt", "image_size": 16}
    assert config_lib.from_dict(mwt).depth is None and "smoke" not in sys.modules


def test_config_file_errors(tmp_path):
    path_before = list(sys.path)
    with pytest.raises(FileNotFoundError, match=r"config file .*missing.py not found"):
        config_lib.load_config_file(tmp_path / "missing.py")
    empty = _write(tmp_path / "empty.py", "x = 1\n")
    with pytest.raises(ValueError, match=r"must define get_config\(\) returning a dict"):
        config_lib.load_config_file(empty)
    listing = _write(tmp_path / "listing.py", "def get_config():\n    return [1]\n")
    with pytest.raises(ValueError, match=r"get_config\(\) returned list, expected dict"):
        config_lib.load_config_file(listing)
    broken = _write(tmp_path / "broken.py", "from no_such_base import get_config\n")
    with pytest.raises(
        ValueError, match=r"broken.py failed to run: ModuleNotFoundError: .*no_such"
    ):
        config_lib.load_config_file(broken)
    assert sys.path == path_before


def _plugin_family(monkeypatch, **fields):
    """Registers one more family beside the installed ones (the registry read at call time)."""
    installed = dict(registry.families())
    extra = registry.Family(name="plugin", scorers=lambda saved: [], **fields)
    monkeypatch.setattr(registry, "families", lambda: {**installed, "plugin": extra})


def test_methods_are_standard_then_the_registered_objectives(monkeypatch):
    assert config_lib.methods() == ("standard", *registry.objective_methods())
    assert {"mwt", "moda"} <= set(config_lib.methods())
    assert config_lib.METHODS == config_lib.methods()  # the old name, computed on access
    with pytest.raises(ValueError, match=r"method='seam' is invalid: expected one of \('standard'"):
        config_lib.TrainConfig(method="seam")
    known = repr(config_lib.methods())
    with pytest.raises(ValueError, match=re.escape(known)):  # the message names every one
        config_lib.from_dict({"method": "panrajan"})  # a module method, not an objective
    _plugin_family(monkeypatch, methods=("seam",), objectives=("seam",))
    assert config_lib.methods()[-1] == "seam"
    assert config_lib.TrainConfig(method="seam").method == "seam"  # no other list to update


def test_nemo_is_an_objective_with_its_settings_checked_and_refused_elsewhere():
    from modjax.runs import build

    assert "nemo" in config_lib.methods() and "nemo" not in registry.methods()  # no modules yet
    assert [m for m in ("standard", "mwt", "moda", "nemo") if build.uses_generators(m)] == [
        "mwt",
        "nemo",
    ]
    with pytest.raises(ValueError, match=r"nemo_temperature=0.0 is invalid: expected a finite"):
        config_lib.TrainConfig(method="nemo", nemo_temperature=0.0)
    with pytest.raises(ValueError, match=r"nemo_form='simclr' is invalid: expected one of"):
        config_lib.TrainConfig(method="nemo", nemo_form="simclr")
    with pytest.raises(ValueError, match=r"\['nemo_weight'\] do not apply to method='mwt'; use"):
        build.make_objective(config_lib.TrainConfig(method="mwt", nemo_weight=1.0), 10)
    with pytest.raises(ValueError, match=r"\['cohesion_weight'\] do not apply to method='nemo'"):
        build.make_objective(config_lib.TrainConfig(method="nemo", cohesion_weight=1.0), 10)
    # CNNs: NeMo's defaults; ViTs: blocks 1.. only, no first-layer quirk, alpha 0.15 (METHODS §6).
    cnn = config_lib.TrainConfig(method="nemo", model="lenet5", nemo_form="supcon")
    assert build._nemo_kwargs(cnn, {"nemo_form": "supcon"}) == {"form": "supcon"}
    vit = config_lib.TrainConfig(method="nemo", model="vit_tiny", width=0.25, nemo_temperature=0.1)
    kwargs = build._nemo_kwargs(vit, {"nemo_temperature": 0.1})
    assert kwargs.pop("layers") == [f"block{i}.{u}" for i in range(1, 12) for u in ("attn", "mlp")]
    assert kwargs == {"contrastive_weight": 0.15, "first_layer_ones": False, "temperature": 0.1}
