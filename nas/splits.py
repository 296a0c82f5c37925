"""The stratified, seeded train / validation / test split every search and prepared directory uses."""

from __future__ import annotations

import math

import numpy as np

from nas.errors import InputError

MIN_PER_CLASS = 5  # enough for a stratified test, validation and training split


def _smallest_splittable(classes: int, hold_out_test: bool) -> int:
    """How many images a stratified 20 % test split (when held out here) and a 20 % validation split need,
    rounded as scikit-learn rounds them: each part of each split must hold every class."""

    def fits(n: int) -> bool:
        held = math.ceil(0.2 * n)
        return held >= classes and n - held >= classes

    n = classes * MIN_PER_CLASS
    while not (fits(n) and (not hold_out_test or fits(n - math.ceil(0.2 * n)))):
        n += 1
    return n


def split_indices(
    name: str,
    y: np.ndarray,
    names: list[str],
    seed: int,
    hold_out_test: bool = True,
    test_size: float | int = 0.2,
    hold_out_val: bool = True,
    skipped: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Indices of the train, (when `hold_out_val`) validation and (when `hold_out_test`) test images:
    the test split is held out first (stratified, seeded), the rest splits 80/20. Splitting indices
    picks the images that splitting the images themselves would (scikit-learn draws from the labels
    and the seed)."""
    from sklearn.model_selection import train_test_split  # here: 1.5 s a refused input need not wait

    if len(names) < 2:
        found = f"only class {names[0]!r}" if names else "no labelled images"
        raise InputError(f"data: {name}: found {found}, expected at least 2 classes")
    counts = np.bincount(y, minlength=len(names))
    if counts.min() < MIN_PER_CLASS:
        small = names[int(counts.argmin())]
        raise InputError(
            f"data: {name}: {f'after skipping {skipped} unreadable image(s), ' if skipped else ''}class {small!r} "
            f"has {counts.min()} image(s), expected at least {MIN_PER_CLASS} per class"
        )
    images = len(y)
    index, test = np.arange(images), None
    try:
        if hold_out_test:
            index, test, y, _ = train_test_split(index, y, test_size=test_size, random_state=seed, stratify=y)
        train, val = (
            train_test_split(index, test_size=0.2, random_state=seed, stratify=y) if hold_out_val else (index, None)
        )
    except ValueError:  # scikit-learn: a split would miss a class
        needed = _smallest_splittable(len(names), hold_out_test=hold_out_test)
        raise InputError(
            f"data: {name}: {images} images in {len(names)} classes are too few to give every class an "
            f"image in each of the stratified splits, expected at least {needed} images "
            f"({math.ceil(needed / len(names))} per class)"
        ) from None
    return train, val, test
