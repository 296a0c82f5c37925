"""Does augmentation help? The course ladder's cnn10_aug winner retrained with its augmentation and
without it (the same architecture otherwise), on the same mnist5k split, over several seeds.

    python benchmarks/augmentation_ablation.py [--seeds 3] [--final-epochs 15]

Reads the winner from benchmarks/results/course_ladder.json (run benchmarks/course_ladder.py
first). Writes benchmarks/results/augmentation_ablation.json and the "Augmentation ablation"
section of benchmarks/RESULTS.md. About 1 minute a training on 2 cores: 6 minutes by default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, table, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--final-epochs", type=int, default=15)
    args = parser.parse_args()

    from nas.data import load_data
    from nas.trainer import configure_threads, train_final
    from search_spaces import load_space
    from search_spaces.interop import from_values

    ladder = json.loads((RESULTS / "course_ladder.json").read_text())
    space = load_space("cnn10_aug")
    spec = space.resolve(from_values(space, ladder["rows"]["nas cnn10_aug"][0]["winner"]))
    augment = {k: v for k, v in spec["augment"].items() if v}
    data = load_data("mnist5k", seed=0)  # the ladder's split
    configure_threads(2)
    rows: dict[str, list[float]] = {"with its augmentation": [], "without augmentation": []}
    for seed in range(args.seeds):
        for name, chosen in (("with its augmentation", spec["augment"]), ("without augmentation", {})):
            _, metrics = train_final(
                {**spec, "augment": chosen},
                data.final_arrays(),
                input_shape=data.input_shape,
                num_classes=data.num_classes,
                epochs=args.final_epochs,
                seed=seed,
            )
            rows[name].append(metrics["test_accuracy"])
            print(name, seed, metrics["test_accuracy"], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "augmentation_ablation.json").write_text(
        json.dumps({"settings": vars(args), "augment": augment, "rows": rows}, indent=1)
    )
    figures = table(
        ["", "test accuracy, mean", "min - max"],
        [[name, f"{statistics.mean(a):.4f}", f"{min(a):.4f} - {max(a):.4f}"] for name, a in rows.items()],
    )
    body = (
        f"The cnn10_aug winner of the course ladder (augmentation {augment}), trained {args.final_epochs} epochs "
        f"on mnist5k's train + validation and tested on its 1,000 test images, {args.seeds} seeds each.\n\n" + figures
    )
    write_section("Augmentation ablation", command_line(), body)
    print(figures)


if __name__ == "__main__":
    main()
