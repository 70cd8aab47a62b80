"""The zoo's architectures train from `modjax train` with their default recipe.

Three architectures the rest of the suite does not train (`mlp`, `lenet5`, `simcnn`, `vgg16` and
the BN ResNets train in other tests); `benchmarks/zoo_smoke.py` runs every zoo name (25 of 25
finite and falling), and its table is committed in `benchmarks/results/zoo_smoke_cpu.md`.
"""

import pytest

from benchmarks.zoo_smoke import smoke


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "mobilenet", "resnet20_nobn"])
def test_default_recipe_gives_a_finite_falling_loss(model, tmp_path):
    row = smoke(model, tmp_path / model)
    assert row.get("error") is None, row
    assert row["finite"], row
    assert row["last_epoch_loss"] < row["first_epoch_loss"], row
