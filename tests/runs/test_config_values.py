"""TrainConfig refuses settings of the wrong type or out of range, before anything is written."""

import pytest

from modjax.cli import main
from modjax.runs.config import ConfigTypeError, TrainConfig

BAD = [
    ({"num_epochs": 1.5}, ConfigTypeError, "num_epochs=1.5 has type float; expected int"),
    ({"num_epochs": "3"}, ConfigTypeError, "num_epochs='3' has type str; expected int"),
    ({"global_batch_size": 32.0}, ConfigTypeError, "global_batch_size=32.0 has type float"),
    ({"nesterov": 1}, ConfigTypeError, "nesterov=1 has type int; expected bool"),
    ({"model": 3}, ConfigTypeError, "model=3 has type int; expected str"),
    ({"depth": 2.0}, ConfigTypeError, "depth=2.0 has type float; expected int or None"),
    ({"momentum": 1.0}, ValueError, r"momentum=1.0 is invalid: expected a number in \[0, 1\)"),
    ({"momentum": -0.1}, ValueError, "momentum=-0.1 is invalid"),
    ({"mask_learning_rate": float("nan")}, ValueError, "mask_learning_rate=nan is invalid"),
    ({"mask_learning_rate": float("inf")}, ValueError, "mask_learning_rate=inf is invalid"),
    ({"t_max": 0}, ValueError, "t_max=0 is invalid: expected >= 1"),
    ({"weight_decay": -1.0}, ValueError, "weight_decay=-1.0 is invalid"),
    ({"width": float("inf")}, ValueError, "width=inf is invalid"),
    ({"schedule": "linear"}, ValueError, "schedule='linear' is invalid"),
    ({"backend": "gcs"}, ValueError, "backend='gcs' is invalid"),
    ({"num_devices": 0}, ValueError, "num_devices=0 is invalid"),
]


@pytest.mark.parametrize("values,kind,message", BAD)
def test_bad_values_are_refused(values, kind, message):
    with pytest.raises(kind, match=message):
        TrainConfig(**values)


def test_ints_are_accepted_for_float_settings():
    assert TrainConfig(learning_rate=1, width=1).learning_rate == 1


@pytest.mark.parametrize("values,kind,message", BAD[:4])
def test_config_file_with_bad_types_leaves_no_workdir(tmp_path, capsys, values, kind, message):
    del kind
    config = tmp_path / "bad.py"
    config.write_text(f"def get_config():\n    return {values!r}\n")
    workdir = tmp_path / "run"
    assert main(["train", "--config", str(config), "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err
    assert not workdir.exists()
