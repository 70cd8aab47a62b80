"""The zoo's architectures train from `modjax train` with their default recipe.

One model per architecture the rest of the suite does not train already (`mlp`, `lenet5` and
`simcnn` train in many tests); `benchmarks/zoo_smoke.py` runs every zoo name, and its table is
committed in `benchmarks/results/zoo_smoke_cpu.md`.
"""

import pytest

from benchmarks.zoo_smoke import smoke


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rescnn", "vgg16", "resnet18", "mobilenet", "resnet20_nobn"])
def test_default_recipe_gives_a_finite_falling_loss(model, tmp_path):
    row = smoke(model, tmp_path / model)
    assert row.get("error") is None, row
    assert row["finite"], row
    assert row["last_epoch_loss"] < row["first_epoch_loss"], row
