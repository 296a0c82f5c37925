"""Caps on users' files, checked before the work they guard (README, "Limits").

A small file must not take the machine: an .npz's arrays are sized from their headers before they
are read, an image's pixels are counted from its header before it is decoded, and a path that is a
FIFO, a socket or a device (which would block a read for ever, or never end) is refused by its type.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nas.errors import InputError
from search_spaces.space import file_kind

MIN_IMAGE_PIXELS = 4096 * 4096  # the cap on an image's pixels is at least this ...
IMAGE_PIXELS_PER_INPUT_PIXEL = 256  # ... or this many times the model's input (16x its height and width)
MAX_IMAGE_PIXELS_VARIABLE = "NAS_MAX_IMAGE_PIXELS"  # replaces the cap when set
MEMORY_SHARE = 0.25  # an .npz's arrays may take this share of the memory (the splits copy them)


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not every platform reports it
        return None


def check_path_kind(path: Path, where: str, folder_ok: bool = True) -> None:
    """InputError if `path` is a FIFO, socket or device (or a folder, unless `folder_ok`); a path
    that does not exist is left to the caller, which knows what it expected there."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):
        if not folder_ok:
            raise InputError(f"{where}: {path}: is a folder, expected a file")
    elif not stat.S_ISREG(mode):
        raise InputError(f"{where}: {path}: is a {file_kind(mode)}, expected a regular file or folder")


def check_npz_memory(path: Path, where: str) -> None:
    """InputError if an .npz's arrays would take more than MEMORY_SHARE of the memory once loaded,
    as each member's .npy header says (nothing is decompressed)."""
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as file:
                    major, _ = np.lib.format.read_magic(file)
                    read_header = (
                        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(file)
                total += int(np.prod(shape, dtype=object)) * dtype.itemsize
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return  # not a well-formed archive: numpy.load names the problem
    memory = physical_memory()
    if memory and total > memory * MEMORY_SHARE:
        raise InputError(
            f"{where}: its arrays would take {total / 2**30:,.1f} GiB once loaded, expected at most "
            f"{MEMORY_SHARE:.0%} of this machine's {memory / 2**30:.0f} GiB"
        )


def max_image_pixels(size: Sequence[int]) -> int:
    """The most pixels an image decoded to `size` (height, width) may have."""
    value = os.environ.get(MAX_IMAGE_PIXELS_VARIABLE)
    if value is not None:
        if not value.strip().isdigit() or int(value) < 1:
            raise InputError(f"{MAX_IMAGE_PIXELS_VARIABLE}: got {value!r}, expected a positive number of pixels")
        return int(value)
    return max(MIN_IMAGE_PIXELS, IMAGE_PIXELS_PER_INPUT_PIXEL * int(size[0]) * int(size[1]))


class TooManyPixels(ValueError):
    """An image larger than the cap; the message is for the caller to name the image in."""


def check_image_pixels(width: int, height: int, size: Sequence[int], cap: int | None = None) -> None:
    """TooManyPixels if an image of width x height has more pixels than images decoded to `size` may
    have (`cap`, default max_image_pixels(size))."""
    cap = cap or max_image_pixels(size)
    if width * height > cap:
        raise TooManyPixels(
            f"{width}x{height} pixels, expected at most {cap:,} for a model taking {size[0]}x{size[1]} "
            f"(set {MAX_IMAGE_PIXELS_VARIABLE} to allow more)"
        )
