"""`benchmarks/profile_step.py`: self times of nested profiler events, op names, bad flags."""

from collections import namedtuple

import jax
import jax.numpy as jnp
import pytest

from benchmarks import profile_step

Event = namedtuple("Event", "name start_ns duration_ns")


def test_self_times_subtract_nested_events():
    events = [
        Event("while.1", 0, 100),  # a loop whose body ran twice
        Event("body_fusion", 10, 30),
        Event("body_fusion", 50, 40),
        Event("after", 100, 5),  # starts where the loop ends: not nested
        Event("copy", 200, 7),
    ]
    got = profile_step._self_times(events)
    assert got == [
        ("while.1", 30),
        ("body_fusion", 30),
        ("body_fusion", 40),
        ("after", 5),
        ("copy", 7),
    ]
    assert sum(ns for _, ns in got) == 100 + 5 + 7  # wall time covered, counted once


def test_op_names_cover_every_instruction():
    def f(x, w):
        return jnp.sum(jax.nn.relu(x @ w) ** 2)

    x, w = jnp.ones((4, 3)), jnp.ones((3, 2))
    text = jax.jit(jax.grad(f, argnums=1)).lower(x, w).compile().as_text()
    names = profile_step._op_names(text)
    instructions = [line for line in text.splitlines() if " = " in line and "%" in line]
    assert len(names) >= len(instructions) // 2 > 0
    assert any("dot" in k for k in names)  # the matmuls are there, by name
    assert all(isinstance(v, str) for v in names.values())
    assert any(v.startswith("jit(f)/") or "jvp" in v or "transpose" in v for v in names.values())


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--width", "0"], "--width must be > 0, got 0.0"),
        (["--threads", "999"], "--threads must be in 1.."),
    ],
)
def test_bad_flags_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        profile_step.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_model_is_refused():
    with pytest.raises(SystemExit, match="--model 'nope' is not a zoo model; expected one of"):
        profile_step.main(["--model", "nope"])
