"""The zoo's architectures train from `modjax train` with their default recipe.

Two architectures, within the suite's time budget (`mlp`, `lenet5` and the BN ResNets train
end to end in other tests; `vgg16`, `rescnn` and `simcnn` train steps are checked against PyTorch
or a float64 reference there). `benchmarks/zoo_smoke.py` trains every zoo name the same way (25
of 25 finite and falling), and its table is committed in `benchmarks/results/zoo_smoke_cpu.md`.
"""

import pytest

from benchmarks.zoo_smoke import smoke


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "resnet20_nobn"])
def test_default_recipe_gives_a_finite_falling_loss(model, tmp_path):
    row = smoke(model, tmp_path / model)
    assert row.get("error") is None, row
    assert row["finite"], row
    assert row["last_epoch_loss"] < row["first_epoch_loss"], row
