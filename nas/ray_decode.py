"""`nas data prepare --address HOST:6379`: images decoded by Ray Data on a cluster's nodes.

    for pixels, reason in decode_each_on_ray(paths, (32, 32), "rgb"):   # as images.decode_each
        ...

The same contract as `nas.images.decode_each`, which tf.data serves on one machine: every path's
(pixels, "") or, unreadable, (zeros, why), in the order given, each decoded by the same
`images.decode_or_reason`. Only the decoding moves to the cluster: the driver still writes the
shards, so a prepared directory is the same, byte for byte, whichever route decoded it. Every node
must read SRC at the same path (a shared disk), as streamed records are read on a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nas.limits import max_image_pixels

BATCH = 64  # images per Ray Data task call: large enough to amortise a call, small enough to spread


def _decode_batch(batch: dict[str, np.ndarray], size, color_mode: str, limit: int) -> dict[str, Any]:
    from nas.images import decode_or_reason

    decoded = [decode_or_reason(Path(str(path)), size, color_mode, limit) for path in batch["path"]]
    return {
        "image": np.stack([image for image, _ in decoded]),
        "reason": np.array([reason for _, reason in decoded], dtype=object),
    }


def decode_each_on_ray(paths: list[Path], size: tuple[int, int], color_mode: str) -> Iterator[tuple[np.ndarray, str]]:
    """`images.decode_each` on the Ray session this process has joined (`nas.cluster.connect`)."""
    import ray.data

    limit = max_image_pixels(size)  # the driver's NAS_MAX_IMAGE_PIXELS, not each node's
    # Ray Data's progress bars and its notes (one warns that the bars are off) stay off the console,
    # which prints one line per split and names each skipped file.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the shards hold a split in its order
    context.enable_progress_bars = False
    blocks = max(1, min(len(paths) // BATCH, 4 * int(ray.cluster_resources().get("CPU", 1))))
    dataset = ray.data.from_items(
        [{"path": str(Path(p).resolve())} for p in paths], override_num_blocks=blocks
    ).map_batches(
        _decode_batch,
        fn_kwargs={"size": tuple(size), "color_mode": color_mode, "limit": limit},
        batch_size=BATCH,
        batch_format="numpy",
    )
    for batch in dataset.iter_batches(batch_size=BATCH, batch_format="numpy", prefetch_batches=4):
        for image, reason in zip(batch["image"], batch["reason"]):
            yield image, str(reason)
