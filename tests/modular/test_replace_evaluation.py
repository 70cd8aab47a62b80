"""modjax.modular.replace.evaluate_replacement: the one §5.7 evaluation (keys and values)."""

import numpy as np
import pytest

from modjax.modular import replace


def _task(n=300, seed=0):
    """Weak model blind to class 2 (which only the strong module sees); 3 classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    images = np.zeros((n, 2, 2, 1), np.float32)
    images[:, 0, 0, 0] = (y == 0) * 2.0
    images[:, 0, 1, 0] = (y == 1) * 2.0
    images[:, 1, 1, 0] = (y == 2) * 1.0

    def weak(x):
        return x.reshape(len(x), -1)[:, :3]

    def strong(x):
        return 5.0 * x[:, 1, 1, 0]

    return images, y, weak, strong


def test_evaluate_replacement_keys_and_consistency():
    images, y, weak, strong = _task()
    batches = [{"image": images[i : i + 64], "label": y[i : i + 64]} for i in range(0, 300, 64)]
    result = replace.evaluate_replacement(
        weak,
        strong,
        train_batches=batches,
        test_images=images,
        test_labels=y,
        target_index=2,
        num_classes=3,
        strong_min=0.0,
        strong_max=5.0,
        num_epochs=10,
        eval_batch_size=100,
    )
    names = ("weak", *replace.APPROACHES)
    assert replace.APPROACHES == ("cnnsplitter", "moda_adapter")
    assert set(result) == {"per_class_accuracy", "accuracy", "change", "adapter_train_time_s"}
    assert set(result["per_class_accuracy"]) == set(result["accuracy"]) == set(names)
    acc = {n: np.asarray(a) for n, a in result["per_class_accuracy"].items()}
    counts = np.bincount(y, minlength=3)
    for name in names:  # overall = per-class accuracy weighted by the class counts
        assert result["accuracy"][name] == pytest.approx(np.sum(acc[name] * counts) / len(y))
    for name in replace.APPROACHES:  # the changes are the per-class differences
        change = result["change"][name]
        assert set(change) == {"tc", "mean_non_tc"}
        assert change["tc"] == pytest.approx(acc[name][2] - acc["weak"][2])
        assert change["mean_non_tc"] == pytest.approx(np.mean(acc[name][:2] - acc["weak"][:2]))
    # Both repairs recover the class the weak model cannot see.
    assert result["change"]["moda_adapter"]["tc"] > 0.9
    assert result["change"]["cnnsplitter"]["tc"] > 0.9
    assert result["adapter_train_time_s"] > 0


def test_evaluate_replacement_checks_the_target_index():
    images, y, weak, strong = _task(n=8)
    with pytest.raises(ValueError, match=r"target_index=3 must be a weak output in \[0, 3\)"):
        replace.evaluate_replacement(
            weak,
            strong,
            train_batches=[],
            test_images=images,
            test_labels=y,
            target_index=3,
            num_classes=3,
            strong_min=0.0,
            strong_max=1.0,
        )
