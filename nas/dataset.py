"""The images a search sees, split: what `nas.data.load_data` returns (and `nas.records` for a
prepared directory that fits in memory)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BUILTIN = ("mnist5k", "digits")  # data sources shipped with installed packages


@dataclass
class Dataset:
    name: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict[str, Any] = field(default_factory=dict)  # how raw files became these arrays
    fingerprint: str | None = None  # the data's identity when known without hashing pixels (a prepared directory)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def search_arrays(self) -> dict[str, np.ndarray]:
        """What every child trains and validates on: never the test split."""
        return {"x_train": self.x_train, "y_train": self.y_train, "x_val": self.x_val, "y_val": self.y_val}

    def final_arrays(self) -> dict[str, np.ndarray]:
        """What the winner is retrained on (train + validation) and tested on."""
        return {
            "x_train": np.concatenate([self.x_train, self.x_val]),
            "y_train": np.concatenate([self.y_train, self.y_val]),
            "x_test": self.x_test,
            "y_test": self.y_test,
        }

    def class_counts(self, final: bool = False) -> np.ndarray:
        """Images per class that the children train on, or with `final` the winner (train + validation)."""
        labels = np.concatenate([self.y_train, self.y_val]) if final else self.y_train
        return np.bincount(np.asarray(labels, np.int64), minlength=self.num_classes)

    def describe(self) -> str:
        h, w, c = self.input_shape
        skipped = len(self.preprocessing.get("skipped", []))
        return (
            f"{self.name}: {self.num_classes} classes, {h}x{w}x{c} images, train {len(self.y_train)} / "
            f"validation {len(self.y_val)} / test {len(self.y_test)} (held out)"
            + (f", {skipped} unreadable image{'s' * (skipped != 1)} skipped" if skipped else "")
        )


def balanced_class_weights(counts: Any) -> tuple[float, ...]:
    """scikit-learn's `class_weight="balanced"`: images / (classes x the class's images), so that
    every class weighs as much in the loss; a class with no image gets 1."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    total, classes = counts.sum(), max(1, int(present.sum()))
    return tuple(float(total / (classes * c)) if c > 0 else 1.0 for c in counts)


def data_fingerprint(data) -> str:
    """Identifies the split a search saw (a Dataset, or a StreamingDataset of nas.records), so that a
    resumed search or an export can check it sees the same."""
    if data.fingerprint:  # a prepared directory (nas.records), in memory or streamed: its shards' checksums
        return data.fingerprint
    digest = hashlib.sha1()
    for array in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]
