"""The settings of one search, as given on the command line and resolved before it starts.

The resolved settings are printed at the start and written to the run's `config.json`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from nas.objective import KINDS


@dataclass
class SearchConfig:
    space: str = "cnn10"  # a built-in space's name or the path of a space file
    budget: int | None = None  # child models trained from scratch; None: 200 (standalone), the finalists (enas)
    strategy: str = "standalone"  # standalone: every child from scratch; enas: weight sharing (nas.enas)
    data: str = "mnist5k"  # mnist5k, digits, an image folder, a .csv of path,label or an .npz
    image_size: tuple[int, int] | None = None  # resize folder and CSV images to this (default 32x32)
    color_mode: str = "rgb"  # rgb or grayscale, for folder and CSV images
    controller: str = "reinforce"  # a name in controllers.NAMES: reinforce, random, evolution, kt-...
    base: str | None = None  # a transfer space's trained model (.keras); the run keeps a copy, base.keras
    workers: int | None = None  # concurrent trials; None: the cluster's CPUs / cpus_per_trial
    cpus_per_trial: float = 1.0  # Ray CPUs per child; TensorFlow gets as many threads
    gpus_per_trial: float = 0.0  # Ray GPUs per child
    tpu: str | None = None  # train each child on a TPU: TPUClusterResolver's name, "local" on a TPU VM host
    mixed_precision: str | None = None  # off, float16 or bfloat16; None: bfloat16 on a TPU, else off
    address: str | None = None  # join this Ray cluster instead of starting a local one
    epochs: int | None = None  # epochs per child; None: the space's search_epochs
    final_epochs: int | None = None  # epochs for the winner's retraining; None: the space's final_epochs
    ensemble: int | None = None  # the best N children retrained and averaged (nas.ensemble); None: the space's
    name: str | None = None  # the run's directory name; None: <space>-<date>-<time>
    runs_dir: str = "runs"  # where run directories go
    seed: int = 0  # seeds the data split, the controller and every child
    dashboard: bool = True  # start the Ray dashboard (local Ray only)
    max_failures: int = 5  # consecutive failed trials that stop the search (exit code 3)
    trial_timeout: float | None = None  # seconds a child may run before it is stopped and failed
    worker_memory_growth: int = 1024  # MB a worker process may grow by before the workers are replaced
    verbose: bool = False  # show Ray Tune's status table and the workers' own logs
    scheduler: str | None = None  # fifo: every child trains all its epochs; asha: poor children stop early;
    # None: the space's training.scheduler, or fifo where ASHA could stop no child (engine._space_scheduler)
    grace_period: int = 1  # ASHA: epochs every child trains before it may be stopped
    reduction_factor: int = 3  # ASHA: 1 in this many children goes on at each rung
    objective: str = "accuracy"  # METRIC or METRIC-COST: accuracy, macro-f1-params, ... (nas.objective)
    target_params: int | None = None  # the parameter count accuracy-params aims at
    target_latency_ms: float | None = None  # the ms per image (batch of 1) accuracy-latency aims at
    objective_weight: float = -0.07  # w in accuracy x (cost / target) ^ w (MnasNet)
    # seconds: no child is started that would likely end later in the session (--time-budget 30m)
    time_budget: float | None = None
    class_weight: str | None = None  # none or balanced (inverse class frequency) for every child and the
    # winner; None: the space's training.class_weight
    mlflow: str | None = None  # log the search to this MLflow tracking URI (nas.tracking)
    mlflow_experiment: str = "nas"  # the MLflow experiment the search's runs go into
    mlflow_register: str | None = None  # register the winner under this name in MLflow's model registry

    # What a resumed search may change: how it runs, not what it searches.
    RESUMABLE: ClassVar[tuple[str, ...]] = (
        "budget",
        "workers",
        "cpus_per_trial",
        "gpus_per_trial",
        "tpu",
        "mixed_precision",
        "address",
        "dashboard",
        "max_failures",
        "trial_timeout",
        "worker_memory_growth",
        "verbose",
        "time_budget",
        "ensemble",
        "mlflow",
        "mlflow_experiment",
        "mlflow_register",
    )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size) if self.image_size else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchConfig:
        """The settings saved in a run's config.json (which holds more keys than these). A value of
        the wrong type is a ValueError naming the key, the value and the type expected."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if isinstance(values.get("tpu"), bool):  # runs from before --tpu took a name
            values["tpu"] = "local" if values["tpu"] else None
        for f in fields(cls):
            if f.name in values and not _has_type(values[f.name], f.type):
                expected = " or ".join(_WORDS[kind.strip()] for kind in f.type.split("|"))
                raise ValueError(f"{f.name}: got {values[f.name]!r}, expected {expected}")
        if values.get("image_size"):
            values["image_size"] = tuple(values["image_size"])
        return cls(**values)


CHOICES = {
    "strategy": ("standalone", "enas"),
    "color_mode": ("rgb", "grayscale"),
    "scheduler": (None, "fifo", "asha"),
    "objective": KINDS,
    "class_weight": (None, "none", "balanced"),
    "mixed_precision": (None, "off", "float16", "bfloat16"),
}
# (least, whether the least is excluded) of the numeric settings that have one; None is always allowed
# where the type allows it.
LIMITS = {
    "budget": (1, False),
    "workers": (1, False),
    "cpus_per_trial": (0, True),
    "gpus_per_trial": (0, False),
    "epochs": (1, False),
    "final_epochs": (1, False),
    "ensemble": (1, False),
    "seed": (0, False),
    "max_failures": (1, False),
    "trial_timeout": (0, True),
    "worker_memory_growth": (1, False),
    "grace_period": (1, False),
    "reduction_factor": (2, False),
    "target_params": (1, False),
    "target_latency_ms": (0, True),
    "time_budget": (0, True),
}


def parse_duration(text: str) -> float:
    """Seconds in a duration as people write them: 90 (seconds), 90s, 30m, 2h, 1h30m, 1.5h.
    ValueError saying what was expected."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", value)
        if not value or not match:
            raise ValueError(f"got {text!r}, expected a duration such as 90 (seconds), 90s, 30m, 2h or 1h30m")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not (0 < seconds < 10**9):
        raise ValueError(f"got {text!r}, expected a duration above 0")
    return seconds


def check_settings(settings: dict[str, Any]) -> None:
    """The settings a Python caller gave (`nas.search(budget=..., ...)`), checked as the command's
    options check them: ValueError naming the setting, its value and what was expected."""
    import math

    from controllers import NAMES
    from nas.errors import MAX_SEED

    types = {f.name: f.type for f in fields(SearchConfig)}
    for name, value in settings.items():
        if not _has_type(value, types[name]):
            expected = " or ".join(_WORDS[kind.strip()] for kind in types[name].split("|"))
            raise ValueError(f"{name}: got {value!r}, expected {expected}")
        choices = NAMES if name == "controller" else CHOICES.get(name)
        if choices and value not in choices:
            raise ValueError(f"{name}: got {value!r}, expected one of {', '.join(repr(c) for c in choices)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: got {value!r}, expected a finite number")
        if name in LIMITS and value is not None:
            least, excluded = LIMITS[name]
            if value < least or (excluded and value == least):
                raise ValueError(
                    f"{name}: got {value!r}, expected a number {'above' if excluded else 'of at least'} {least}"
                )
        if name == "seed" and value > MAX_SEED:
            raise ValueError(f"seed: got {value}, expected an integer from 0 to {MAX_SEED}")
        if name == "objective_weight" and value > 0:
            raise ValueError(f"objective_weight: got {value!r}, expected a number of at most 0")


_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "None": "null",
    "tuple[int, int]": "a pair of positive integers",
}


def _has_type(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a field's annotation ("int | None", "tuple[int, int] | None", ...)."""
    for kind in (part.strip() for part in annotation.split("|")):
        if kind == "None" and value is None:
            return True
        if kind == "bool" and isinstance(value, bool):
            return True
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind == "str" and isinstance(value, str):
            return True
        if (
            kind == "tuple[int, int]"
            and isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            return True
    return False
