"""Run configuration for the CLI: a frozen dataclass, experiment config files, JSON round-trip."""

import dataclasses
import importlib.util
import json
import math
import pathlib
import sys
import typing
from typing import Any

from modjax import _contrastive
from modjax.modules import registry


def methods() -> tuple[str, ...]:
    """The training objectives: `standard` (cross-entropy), then every registered family's.

    Read from the method registry when called (`registry.objective_methods()`), never at import.
    """
    return ("standard", *registry.objective_methods())


def __getattr__(name: str) -> Any:
    # `METHODS` for callers outside the library that still read the old tuple: computed on
    # access from the registry (no import-time list); new code calls `methods()`.
    if name == "METHODS":
        return methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Defaults: the embedded `digits` data, seconds on a CPU.

    Hyperparameter defaults follow METHODS.md §9 (SGD 0.05, Nesterov momentum 0.9, per-epoch
    cosine, batch 128); the paper runs are 200 epochs, set `num_epochs` for them.
    """

    model: str = "mlp"
    dataset: str = "digits"
    method: str = "standard"
    width: float = 1.0
    depth: int | None = None  # mlp only: number of hidden layers (1-4)
    num_epochs: int = 5
    global_batch_size: int = 128
    learning_rate: float = 0.05
    mask_learning_rate: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "cosine"
    t_max: int | None = None  # cosine period in epochs; None = num_epochs
    seed: int = 0
    augment: bool | None = None  # None = the dataset's default (METHODS §2.5)
    normalize: bool = True
    image_size: int | None = None  # resize inputs on device, e.g. 32 for MNIST on CNNs
    train_examples: int | None = None  # a seeded random subset of the training split
    validation_split: float = 0.0  # share of the training split held out for selection
    data_dir: str | None = None
    backend: str = "auto"
    num_devices: int | None = None
    log_every: int = 50
    eval_every: int = 1  # epochs
    checkpoint_every: int = 500  # steps
    keep_checkpoints: int = 3
    # Objective weights; None = the paper default of the chosen method.
    cohesion_weight: float | None = None
    coupling_weight: float | None = None
    affinity_weight: float | None = None
    dispersion_weight: float | None = None
    compactness_weight: float | None = None
    # NeMo (`method="nemo"`): α, τ_c and the loss form; None = the defaults (`make_objective`).
    nemo_weight: float | None = None
    nemo_temperature: float | None = None
    nemo_form: str | None = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check_type(field, getattr(self, field.name))
        known = methods()
        _check(self.method in known, "method", self.method, f"one of {known}")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, f"one of {SCHEDULES}")
        _check(self.backend in BACKENDS, "backend", self.backend, f"one of {BACKENDS}")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(
            self.weight_decay >= 0 and math.isfinite(self.weight_decay),
            "weight_decay",
            self.weight_decay,
            "a finite number >= 0",
        )
        _check(
            self.mask_learning_rate is None
            or (self.mask_learning_rate > 0 and math.isfinite(self.mask_learning_rate)),
            "mask_learning_rate",
            self.mask_learning_rate,
            "a positive finite number or None",
        )
        _check(self.t_max is None or self.t_max >= 1, "t_max", self.t_max, ">= 1 epochs or None")
        _check(
            self.num_devices is None or self.num_devices >= 1,
            "num_devices",
            self.num_devices,
            ">= 1 or None",
        )
        _check(math.isfinite(self.width), "width", self.width, "a finite number > 0")
        _check(self.width > 0, "width", self.width, "> 0")
        _check(self.num_epochs >= 1, "num_epochs", self.num_epochs, ">= 1")
        _check(self.global_batch_size >= 1, "global_batch_size", self.global_batch_size, ">= 1")
        _check(
            self.learning_rate > 0 and math.isfinite(self.learning_rate),
            "learning_rate",
            self.learning_rate,
            "a positive finite number",
        )
        _check(
            self.image_size is None or self.image_size >= 1,
            "image_size",
            self.image_size,
            ">= 1 or None",
        )
        _check(self.log_every >= 1, "log_every", self.log_every, ">= 1")
        _check(self.eval_every >= 1, "eval_every", self.eval_every, ">= 1")
        _check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")
        _check(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, ">= 1")
        _check(
            self.train_examples is None or self.train_examples >= 1,
            "train_examples",
            self.train_examples,
            ">= 1 or None",
        )
        _check(
            self.validation_split == 0 or 0 < self.validation_split <= 0.5,
            "validation_split",
            self.validation_split,
            "a share in (0, 0.5], or 0 for no validation split",
        )
        if self.model == "mlp":
            ok, expected = self.depth is None or 1 <= self.depth <= 4, "1-4 hidden layers"
        else:  # `resnet_cifar` takes any 6n+2 (the model checks); other models take none
            ok = self.depth is None or self.model == "resnet_cifar"
            expected = (
                f"None: depth applies to model='mlp' (and 'resnet_cifar') only, not "
                f"{self.model!r} (a CIFAR ResNet's depth is in its name, e.g. resnet56)"
            )
        _check(ok, "depth", self.depth, expected)
        for name in ("cohesion", "coupling", "affinity", "dispersion", "compactness", "nemo"):
            value = getattr(self, f"{name}_weight")
            _check(
                value is None or (math.isfinite(value) and value >= 0),
                f"{name}_weight",
                value,
                "a finite number >= 0",
            )

        _check(
            self.nemo_temperature is None
            or (math.isfinite(self.nemo_temperature) and self.nemo_temperature > 0),
            "nemo_temperature",
            self.nemo_temperature,
            "a finite number > 0 (NeMo: 0.2) or None",
        )
        _check(
            self.nemo_form in (None, *NEMO_FORMS),
            "nemo_form",
            self.nemo_form,
            f"one of {NEMO_FORMS} or None",
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SCHEDULES = ("cosine", "constant")
NEMO_FORMS = _contrastive.FORMS
BACKENDS = ("auto", "raw", "tfds")


class ConfigTypeError(TypeError, ValueError):
    """A setting of the wrong type (a `ValueError` too, so the CLI reports it in one line)."""


def _type_ok(value: Any, allowed: tuple) -> bool:
    if value is None or isinstance(value, bool | str):
        return type(value) in allowed  # a bool is no int, a str no number
    if isinstance(value, int):
        return int in allowed or float in allowed
    return isinstance(value, float) and float in allowed


def _check_type(field: dataclasses.Field, value: Any) -> None:
    """`value` must have the field's annotated type (`X | None` fields also take None)."""
    allowed = typing.get_args(field.type) or (field.type,)
    if not _type_ok(value, allowed):
        names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
        raise ConfigTypeError(
            f"{field.name}={value!r} has type {type(value).__name__}; expected {names}"
        )


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: expected {expected}")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def from_dict(values: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Builds a `TrainConfig`, rejecting unknown keys by name."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"{source}: unknown setting(s) {unknown}; known: {sorted(FIELDS)}")
    return TrainConfig(**values)


def load_config_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Runs an experiment config file's `get_config()` and returns its settings dict.

    The file is executed as Python (it can run arbitrary code: load only files you trust). While
    it runs, its directory is first on `sys.path`, so a variant can build on a base config next
    to it and override a few fields::

        from smoke import get_config as smoke_config

        def get_config():
            return {**smoke_config(), "method": "moda"}

    Modules imported from that directory are dropped from `sys.modules` afterwards, so configs
    in different directories may share file names.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: running the file or its `get_config()` raised (naming the file and the
            error), or it defines no `get_config()`, or that returns no dict.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found (see experiments/configs/)")
    directory = path.resolve().parent
    spec = importlib.util.spec_from_file_location(f"modjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    modules_before = set(sys.modules)
    sys.path.insert(0, str(directory))
    try:
        try:
            spec.loader.exec_module(module)
        except SyntaxError as err:
            raise ValueError(
                f"config file {err.filename or path}, line {err.lineno}: {err.msg}"
            ) from None
        except Exception as err:  # an import it needs, a typo: the user's file, named
            raise ValueError(
                f"config file {path} failed to run: {type(err).__name__}: {err}"
            ) from None
        get_config = getattr(module, "get_config", None)
        if get_config is None:
            raise ValueError(f"config file {path} must define get_config() returning a dict")
        try:
            values = get_config()
        except Exception as err:
            raise ValueError(
                f"config file {path}: get_config() raised {type(err).__name__}: {err}"
            ) from None
    finally:
        sys.path.remove(str(directory))
        for name in set(sys.modules) - modules_before:
            file = getattr(sys.modules[name], "__file__", None)
            if file and pathlib.Path(file).resolve().parent == directory:  # a sibling module
                del sys.modules[name]
    if not isinstance(values, dict):
        raise ValueError(f"{path}: get_config() returned {type(values).__name__}, expected dict")
    return values


def load_project_config(
    path: str | pathlib.Path, section: str, keys: tuple[str, ...], data_dir: str | None = None
) -> tuple[TrainConfig, dict[str, Any]]:
    """`(training config, settings)` of a project config: `get_config()` returns `train` (a
    `modjax train` config) and `section`, a dict of exactly `keys`; `data_dir` overrides.

    Raises:
        ValueError: a missing `train`, an unknown top-level key, or `section` keys missing or
            unknown, naming the file and the keys.
    """
    raw = load_config_file(path)
    unknown = sorted(set(raw) - {"train", section})
    wrong = sorted(set(raw.get(section, {})) ^ set(keys))
    if unknown or "train" not in raw or wrong:
        raise ValueError(
            f"--config {path}: needs 'train' and '{section}' (keys {list(keys)}); unknown "
            f"keys {unknown}, {section} keys missing or unknown {wrong}"
        )
    values = dict(raw["train"])
    if data_dir:
        values["data_dir"] = data_dir
    return from_dict(values, source=str(path)), dict(raw[section])


def save_json(config: TrainConfig, path: pathlib.Path) -> None:
    path.write_text(json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n")


def load_json(path: pathlib.Path) -> TrainConfig:
    """The `TrainConfig` of a workdir's `config.json`.

    Raises:
        ValueError: the file is not valid JSON (e.g. truncated) or holds bad settings; the
            message names the file.
    """
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            "was it truncated? Restore it or delete it (the checkpoint holds the settings too)"
        ) from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object of settings")
    return from_dict(values, source=str(path))
