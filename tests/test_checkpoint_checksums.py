"""Checkpoint checksums: altered bytes are refused at restore, naming the step and the fallback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import checkpoint, train
from tests.tiny import TinyNet

SHAPE = (8, 8, 1)


def _setup(tmp_path, steps=(1, 2)):
    model = TinyNet()
    tx = train.make_optimizer(learning_rate=0.1, steps_per_epoch=1, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=SHAPE)
    manager = checkpoint.make_manager(tmp_path, save_every=1, keep=5)
    for step in steps:
        checkpoint.save(manager, step, state._replace(step=jnp.asarray(step, state.step.dtype)))
    manager.wait_until_finished()
    abstract = train.abstract_train_state(model=model, tx=tx, image_shape=SHAPE)
    return manager, abstract, state


def test_checksums_change_with_any_byte_and_position():
    x = jnp.arange(6, dtype=jnp.float32)
    base = checkpoint.checksums({"x": x})
    assert checkpoint.checksums({"x": x.at[3].set(3.0000002)}) != base  # one ulp
    assert checkpoint.checksums({"x": x[::-1]})["['x']"][1] != base["['x']"][1]  # order
    mixed = {
        "b": jnp.array([True, False]),
        "i": jnp.arange(3, dtype=jnp.int8),
        "h": jnp.ones(2, jnp.bfloat16),
        "s": jnp.int32(7),
    }
    sums = checkpoint.checksums(mixed)
    assert set(sums) == {"['b']", "['h']", "['i']", "['s']"}


def test_restore_verifies_and_names_the_step_and_the_fallback(tmp_path, monkeypatch):
    manager, abstract, _ = _setup(tmp_path)
    restored, meta = checkpoint.restore(manager, abstract)  # intact: fine
    assert int(restored.step) == 2 and checkpoint.CHECKSUMS in meta
    # The bytes on disk no longer match what was recorded at save time.
    real = checkpoint.checksums

    def altered(tree):
        sums = real(tree)
        key = next(k for k in sums if "opt_state" in k)
        sums[key] = [sums[key][0] ^ 1, sums[key][1]]
        return sums

    monkeypatch.setattr(checkpoint, "checksums", altered)
    with pytest.raises(
        checkpoint.CheckpointError, match=r"step 2 .* is damaged.*opt_state.*step 1"
    ):
        checkpoint.restore(manager, abstract)
    with pytest.raises(checkpoint.CheckpointError, match="there is no earlier checkpoint"):
        checkpoint.restore(manager, abstract, step=1)


def test_flipped_bytes_on_disk_are_refused(tmp_path):
    manager, abstract, _ = _setup(tmp_path, steps=(1,))
    files = [p for p in (tmp_path / "1" / "state").rglob("*") if p.is_file()]
    data = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(raw) // 2, size=64, replace=False) + len(raw) // 4:
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))
    manager = checkpoint.make_manager(tmp_path, save_every=1, keep=5)
    with pytest.raises(checkpoint.CheckpointError, match="step 1"):
        restored, _ = checkpoint.restore(manager, abstract)
        # Not reached when detection works; show what loaded if it did not.
        print(jax.tree.map(lambda a: float(jnp.max(jnp.abs(a))), restored.opt_state))
