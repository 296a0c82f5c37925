"""What a cnn10 child costs at real photo sizes (issue 24): the seconds of one training epoch of the
same random cnn10 children, as the search trains them (half width), on 1,000 images of 28 pixels
(mnist5k) and of 64 and 128 pixels (the RGB photo set of nas.photos), with cnn10's stem (stem_to:
32, strided convolutions that bring larger photos to 32 pixels first) and without it.

    python benchmarks/photo_sizes.py [--children 5] [--epochs 2]

Each child is built and trained in this process (one thread per op as a Ray worker with one CPU
would, no Ray), every child on every size; the first epoch (graph tracing) is left out. Writes
benchmarks/results/photo_sizes.json and the "Photo sizes" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, table, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IMAGES = 1000


def datasets(tmp: Path) -> dict[str, tuple]:
    """(x, y) of IMAGES images at each size: mnist5k's first, and the photo set's crops."""
    from nas.data import load_data
    from nas.photos import PHOTOGRAPHS, write_photo_set

    out = {}
    mnist = load_data("mnist5k", seed=0)
    out["28x28x1 (mnist5k)"] = (mnist.x_train[:IMAGES], mnist.y_train[:IMAGES])
    for size in (64, 128):
        per_class = IMAGES * 16 // (10 * len(PHOTOGRAPHS))  # the train split holds 64 % of them
        folder = write_photo_set(tmp / f"photos{size}", size=size, per_class=per_class)
        data = load_data(str(folder), image_size=(size, size))
        out[f"{size}x{size}x3 (photos)"] = (data.x_train[:IMAGES], data.y_train[:IMAGES])
    return out


def epoch_seconds(spec: dict, x, y, epochs: int) -> float:
    """Seconds of an epoch after the first, median."""
    import keras

    from nas.builder import build_model
    from nas.trainer import make_optimizer

    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    model = build_model(spec, x.shape[1:], 10)
    batch = spec["training"]["batch_size"]
    model.compile(optimizer=make_optimizer(spec["training"], 100), loss="sparse_categorical_crossentropy")
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y % 10, batch_size=batch, epochs=epochs + 1, verbose=0, callbacks=[Timer()])
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=5, help="random cnn10 children, each on every size")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per child and size")
    args = parser.parse_args()

    from nas.trainer import configure_threads
    from search_spaces import load_space

    configure_threads(1)
    space = load_space("cnn10")
    rng = random.Random(0)
    archs = [space.architecture([rng.randrange(len(d.choices)) for d in space.decisions]) for _ in range(args.children)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (x, y) in datasets(Path(tmp)).items():
            for stem in (32, 0):
                if stem == 0 and name.startswith("28"):
                    continue  # no stem below 32 pixels either way
                seconds = []
                for arch in archs:
                    spec = {**space.resolve(arch, searched=True), "stem_to": stem}
                    seconds.append(epoch_seconds(spec, x, y, args.epochs))
                rows.append({"images": name, "stem_to": stem, "epoch_seconds": seconds})
                print(name, stem, [f"{s:.2f}" for s in seconds], flush=True)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "photo_sizes.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))
    base = statistics.median(rows[0]["epoch_seconds"])
    figures = table(
        ["images (1,000)", "stem", "seconds an epoch (median of children)", "range", "x the 28-pixel cost"],
        [
            [
                r["images"],
                f"to {r['stem_to']} px" if r["stem_to"] else "none",
                f"{statistics.median(r['epoch_seconds']):.2f}",
                f"{min(r['epoch_seconds']):.2f}-{max(r['epoch_seconds']):.2f}",
                f"{statistics.median(r['epoch_seconds']) / base:.1f}",
            ]
            for r in rows
        ],
    )
    body = (
        f"{args.children} random cnn10 children at the search's half width, each trained on every size "
        f"(batches of 64, one thread per op, no Ray), the median of {args.epochs} epochs after the first.\n\n" + figures
    )
    write_section("Photo sizes", command_line(), body)
    print(figures)


if __name__ == "__main__":
    main()
