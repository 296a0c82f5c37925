"""Early stopping: the same cnn10 search with and without --scheduler asha; wall time saved and the
winners' test accuracy.

    python benchmarks/asha.py [--budget 50] [--epochs 4] [--final-epochs 10] [--seeds 1]

Both searches use the same seed (so the random controller proposes the same children in the same
order) and the same data split (mnist5k). Writes benchmarks/results/asha.json and the "ASHA" section
of benchmarks/RESULTS.md. About 25 minutes with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, nas_search, read_summary, table, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def search(args, seed: int, runs: Path, asha: bool) -> dict:
    run, seconds = nas_search(
        runs,
        f"{'asha' if asha else 'fifo'}-{seed}",
        "--space",
        args.space,
        "--data",
        args.data,
        "--controller",
        "random",
        "--budget",
        str(args.budget),
        "--epochs",
        str(args.epochs),
        "--final-epochs",
        str(args.final_epochs),
        "--seed",
        str(seed),
        *(["--scheduler", "asha", "--grace-period", "1", "--reduction-factor", "3"] if asha else []),
    )
    summary = read_summary(run)
    return {
        "wall_seconds": seconds,
        "search_seconds": summary["search_wall_seconds"],
        "test_accuracy": summary["test_accuracy"],
        "best_val_accuracy": summary["best"]["val_accuracy"],
        "stopped_early": summary.get("trials_stopped_early", 0),
        "completed": summary["trials_completed"],
        "child_fit_seconds": summary["child_fit_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cnn10")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--final-epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()

    rows = {"fifo": [], "asha": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for kind in rows:
                rows[kind].append(search(args, seed, Path(tmp), asha=kind == "asha"))
                print(kind, seed, rows[kind][-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "asha.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))

    def mean(kind, key):
        return statistics.mean(r[key] for r in rows[kind])

    saved = 1 - mean("asha", "search_seconds") / mean("fifo", "search_seconds")
    figures = table(
        ["scheduler", "search wall (s)", "children stopped early", "best val accuracy", "winner's test accuracy"],
        [
            [
                kind,
                f"{mean(kind, 'search_seconds'):.0f}",
                f"{mean(kind, 'stopped_early'):.1f}",
                f"{mean(kind, 'best_val_accuracy'):.4f}",
                f"{mean(kind, 'test_accuracy'):.4f}",
            ]
            for kind in rows
        ],
    )
    body = (
        f"{args.space} on {args.data}, random controller, budget {args.budget}, {args.epochs} epochs per child, "
        f"final training {args.final_epochs} epochs, {args.seeds} seed(s); ASHA grace period 1 epoch, reduction "
        f"factor 3.\n\n" + figures + f"\n\nSearch wall time saved by ASHA: **{saved:.0%}**."
    )
    write_section("ASHA", command_line(), body)
    print(figures, f"\nsaved {saved:.0%}")


if __name__ == "__main__":
    main()
