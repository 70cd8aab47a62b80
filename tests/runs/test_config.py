"""Tests for modjax.runs.config: config files that build on a base config, and their errors."""

import sys

import pytest

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
    with pytest.raises(ModuleNotFoundError, match="no_such_base"):
        config_lib.load_config_file(broken)
    assert sys.path == path_before
