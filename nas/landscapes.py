"""Synthetic landscapes for `nas bench run`: NK landscapes (Kauffman) that a replay searches as it
searches a trained table, made from their parameters and seed alone (nothing stored or downloaded).

    landscape = load_landscape("nk:n=8,c=4,k=2,noise=0.005,seed=0")
    landscape.quality(arch), landscape.is_top(arch)

N decisions of C choices each, laid out as the N layers of a `dense` space (one `units` decision a
layer), so that the decisions share one softmax in REINFORCE as the layers of a real space do. Each
decision i has K other decisions drawn at random as its neighbours and a table of C^(K+1)
contributions drawn uniformly from [0, 1]; an architecture's quality is the mean of the N
contributions its choices select. K = 0 is additive; each unit of K couples more decisions.

A replay observes quality plus Gaussian noise of standard deviation `noise`, drawn from the replay's
own seeded generator, as a retrained child scores a little differently each time. The top 1 % is
by quality: exact where the space has at most 2^20 architectures, above the 99th percentile of
2^20 architectures sampled with the landscape's seed otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import InputError
from search_spaces import Architecture, SearchSpace, parse_space

PREFIX = "nk:"
ENUMERATE_UP_TO = 2**20  # architectures scored exactly; a sample of this many above it
# name: (default, lowest, highest)
PARAMETERS: dict[str, tuple[float, float, float]] = {
    "n": (8, 2, 64),
    "c": (4, 2, 16),
    "k": (2, 0, 4),
    "noise": (0.005, 0.0, 1.0),
    "seed": (0, 0, 2**32 - 1),
}
EXAMPLE = "nk:n=8,c=4,k=2,noise=0.005,seed=0"


def is_landscape(name: str | Path) -> bool:
    return str(name).startswith(PREFIX) or str(name) == PREFIX.rstrip(":")


@dataclass(frozen=True)
class NKParameters:
    n: int  # decisions
    c: int  # choices of each
    k: int  # neighbours each decision's contribution depends on (epistasis)
    noise: float  # standard deviation of a replay's observations around the quality
    seed: int  # draws the neighbours and contributions

    @property
    def name(self) -> str:
        return f"nk:n={self.n},c={self.c},k={self.k},noise={self.noise:g},seed={self.seed}"


def parse_landscape(text: str) -> NKParameters:
    """`nk:n=8,c=4,k=2,noise=0.005,seed=0`; parameters left out take those defaults."""
    body = str(text)[len(PREFIX) :] if str(text).startswith(PREFIX) else ""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in PARAMETERS:
            raise InputError(
                f"table: {text}: {item!r} is not a parameter, expected name=value pairs of "
                f"{', '.join(PARAMETERS)} such as {EXAMPLE}"
            )
        if key in values:
            raise InputError(f"table: {text}: {key} given twice, expected each parameter once")
        default, low, high = PARAMETERS[key]
        try:
            number = float(value) if key == "noise" else int(value)
        except ValueError:
            number = math.nan
        if not (low <= number <= high):  # NaN fails too
            kind = "a number" if key == "noise" else "an integer"
            raise InputError(f"table: {text}: {key}: got {value.strip()!r}, expected {kind} from {low:g} to {high:g}")
        values[key] = number
    p = NKParameters(**{key: values.get(key, default) for key, (default, _, _) in PARAMETERS.items()})
    if p.k >= p.n:
        raise InputError(f"table: {text}: k: got {p.k}, expected fewer neighbours than decisions (n = {p.n})")
    return p


class NKLandscape:
    """An NK landscape with the interface `nas.bench.replay_one` reads (see `nas.bench.Table`)."""

    def __init__(self, p: NKParameters):
        self.p = p
        self.path = Path(p.name)  # what a replay's results name as their table
        choices = ", ".join(str(i + 1) for i in range(p.c))
        text = f"name: nk_n{p.n}_c{p.c}_k{p.k}\nfamily: dense\nlayers: {p.n}\nlayer:\n  units: [{choices}]\n"
        self.space: SearchSpace = parse_space(text, source=p.name)
        draw = np.random.default_rng([p.seed, p.n, p.c, p.k])
        # Decision i's contribution reads its own choice and those of its neighbours, as digits in base C.
        self.neighbours = [
            np.sort(draw.choice([j for j in range(p.n) if j != i], size=p.k, replace=False)) for i in range(p.n)
        ]
        self.contributions = draw.random((p.n, p.c ** (p.k + 1)))
        self.size = p.c**p.n
        if self.size <= ENUMERATE_UP_TO:
            grid = np.indices((p.c,) * p.n).reshape(p.n, -1).T
            self.exact = True
        else:
            grid = np.random.default_rng([p.seed, p.n, p.c, p.k, 1]).integers(p.c, size=(ENUMERATE_UP_TO, p.n))
            self.exact = False
        scores = np.sort(self.qualities(grid))[::-1]
        self.top_threshold = float(scores[math.ceil(0.01 * len(scores)) - 1])
        self.best = float(scores[0])
        self.median = float(np.median(scores))
        self.top_count = int(math.ceil(0.01 * self.size)) if self.exact else None

    def qualities(self, choices: np.ndarray) -> np.ndarray:
        """Quality of architectures given as choice indices [B, N]."""
        p = self.p
        choices = np.asarray(choices, np.int64)
        total = np.zeros(len(choices))
        for i, nb in enumerate(self.neighbours):
            index = choices[:, i]
            for j in nb:
                index = index * p.c + choices[:, j]
            total += self.contributions[i, index]
        return total / p.n

    def quality(self, arch: Architecture) -> float:
        return float(self.qualities(np.array([arch.choices]))[0])

    def is_top(self, arch: Architecture) -> bool:
        return self.quality(arch) >= self.top_threshold

    def observe(self, arch: Architecture, rng: np.random.Generator) -> tuple[float, int]:
        """One evaluation: the validation accuracy a child would report, and its parameters (none)."""
        return self.quality(arch) + self.p.noise * float(rng.standard_normal()), 0

    def describe(self) -> str:
        top = f"{self.top_count} architectures" if self.exact else f"above the 99th percentile of {ENUMERATE_UP_TO:,}"
        return (
            f"{self.p.name}: {self.size:,} architectures ({self.p.n} decisions of {self.p.c} choices, "
            f"{self.p.k} neighbours each); top 1 %: {top} with quality >= {self.top_threshold:.4f} "
            f"(best {'' if self.exact else 'sampled '}{self.best:.4f}, median {self.median:.4f})"
        )

    def summary(self) -> Mapping[str, Any]:
        """What a replay's results say about the landscape."""
        return {
            "table": self.p.name,
            "space": self.space.name,
            "architectures": self.size,
            "table_seeds": None,
            "data": "synthetic",
            "epochs": None,
            "noise": self.p.noise,
            "top1pct_threshold": self.top_threshold,
            "top1pct_architectures": self.top_count,
            "top1pct_exact": self.exact,
            "best_mean_test": self.best,
        }


def load_landscape(text: str) -> NKLandscape:
    return NKLandscape(parse_landscape(text))
