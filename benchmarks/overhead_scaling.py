"""Engine overhead and worker scaling: the same cnn10 search with 1 and then 2 workers (1 CPU each).

    python benchmarks/overhead_scaling.py [--budget 20] [--epochs 4]

Engine overhead = (workers x search wall time - sum of the children's fit seconds) / (workers x
search wall time): everything that is not a child training (Ray's scheduling, worker start-up,
the controller, recording). Scaling = trials per hour with 2 workers / with 1. Targets: overhead
under 5 %, scaling at least 1.7x on 2 cores. Both searches use the random controller and the same
seed, so they train the same children. Writes benchmarks/results/overhead_scaling.json and the
"Engine overhead and worker scaling" section of benchmarks/RESULTS.md. About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def search(args, workers: int, runs: Path) -> dict:
    name = f"workers-{workers}"
    command = [sys.executable, "-m", "nas.cli", "search", "--space", args.space, "--data", args.data, "--controller",
               args.controller, "--budget", str(args.budget), "--epochs", str(args.epochs), "--final-epochs", "1",
               "--workers", str(workers), "--cpus-per-trial", "1", "--no-dashboard", "--runs-dir", str(runs),
               "--name", name]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((runs / name / "summary.json").read_text())
    trials = summary["trials_completed"] + summary["trials_failed"] + summary.get("trials_stopped_early", 0)
    return {"workers": workers, "search_wall_seconds": summary["search_wall_seconds"],
            "child_fit_seconds": summary["child_fit_seconds"], "engine_overhead": summary["engine_overhead"],
            "trials": trials, "trials_per_hour": trials / summary["search_wall_seconds"] * 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cnn10")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--controller", default="random")
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for workers in (1, 2):
            rows.append(search(args, workers, Path(tmp)))
            print(rows[-1], flush=True)
    speedup = rows[1]["trials_per_hour"] / rows[0]["trials_per_hour"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead_scaling.json").write_text(json.dumps({"settings": vars(args), "rows": rows,
                                                               "speedup": speedup}, indent=1))
    lines = ["| workers | search wall (s) | children's fit (s) | engine overhead (target < 5 %) | trials per hour |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['search_wall_seconds']:.0f} | {r['child_fit_seconds']:.0f} | "
                     f"{r['engine_overhead']:.1%} | {r['trials_per_hour']:.0f} |")
    body = (f"{args.space} on {args.data}, {args.controller} controller, budget {args.budget}, {args.epochs} epochs per "
            "child, 1 CPU per trial.\n\n" + "\n".join(lines) +
            f"\n\nSpeed-up of trials per hour with 2 workers: **{speedup:.2f}x** (target at least 1.7x).")
    write_section("Engine overhead and worker scaling", command_line(), body)
    print("\n".join(lines), f"\nspeed-up {speedup:.2f}x")


if __name__ == "__main__":
    main()
