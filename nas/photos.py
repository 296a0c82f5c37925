"""A labelled set of RGB photos for tests and benchmarks, cut from the photographs that installed
packages ship (scikit-learn's sample images and scikit-image's data; nothing is downloaded).

    write_photo_set("photos/", size=64, per_class=40, seed=0)   # photos/<photograph>/<n>.jpg

Each class is one photograph; its images are random square crops of a quarter to a half of the
photograph's shorter side, resized to `size` and written as JPEG: telling photographs apart from
parts of them, at real photo sizes (64 to 224 pixels) and in colour, as a user's folder would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nas.errors import InputError

# class name -> (package, file in its data folder)
PHOTOGRAPHS = {
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "astronaut": ("skimage", "astronaut.png"),
    "cat": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "galaxies": ("skimage", "hubble_deep_field.jpg"),
    "tissue": ("skimage", "ihc.png"),
    "motorcycle": ("skimage", "motorcycle_left.png"),
    "retina": ("skimage", "retina.jpg"),
}
CROP = (0.25, 0.5)  # a crop's side, as a fraction of the photograph's shorter side


def photograph_file(name: str) -> Path:
    """Where an installed package keeps the photograph of class `name`."""
    package, file = PHOTOGRAPHS[name]
    try:
        if package == "sklearn":
            import sklearn.datasets

            folder = Path(sklearn.datasets.__file__).parent / "images"
        else:
            import skimage

            folder = Path(skimage.__file__).parent / "data"
    except ImportError:
        raise InputError(
            f"photos: class {name!r} is cut from {package}'s {file}, but {package} is not installed; "
            "expected it (pip install scikit-image)"
        ) from None
    path = folder / file
    if not path.is_file():
        raise InputError(f"photos: {path} not found, expected the photograph {package} ships")
    return path


def write_photo_set(
    out: str | Path, size: int = 64, per_class: int = 40, seed: int = 0, classes: list[str] | None = None
) -> Path:
    """Writes `per_class` crops of each photograph (all of PHOTOGRAPHS unless `classes`) to
    OUT/<class>/<n>.jpg at `size` x `size` pixels; returns OUT."""
    from PIL import Image

    out = Path(out)
    rng = np.random.default_rng(seed)
    for name in classes or list(PHOTOGRAPHS):
        with Image.open(photograph_file(name)) as photo:
            photo = photo.convert("RGB")
            width, height = photo.size
            (out / name).mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                side = int(min(width, height) * rng.uniform(*CROP))
                left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
                crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
                crop.save(out / name / f"{n}.jpg", quality=90)
    return out
