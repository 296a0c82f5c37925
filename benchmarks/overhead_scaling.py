"""Engine overhead and worker scaling: the same cnn10 search with 1 and then 2 workers (1 CPU each).

    python benchmarks/overhead_scaling.py [--budget 20] [--epochs 4] [--ceiling-only]

Engine overhead = (workers x search wall time - sum of the children's fit seconds) / (workers x
search wall time): everything that is not a child training (Ray's scheduling, worker start-up,
the controller, recording). Scaling = trials per hour with 2 workers / with 1. Targets: overhead
under 5 %, scaling at least 1.7x on 2 cores. Both searches use the random controller and the same
seed, so they train the same children.

The overhead is split, from trials.jsonl, into the time inside trials but outside `fit` (each
record's `seconds` less its `fit_seconds`: in a fresh worker TensorFlow's import and the data's
fetch, then building and compiling the child, reporting), the tail (worker slots idle at the end,
once fewer trials than workers are left: the last trial's finish less each other slot's last
finish, to the second), and the rest of the time worker slots held no trial (Ray starting worker
processes, Tune's scheduling, the controller).

The machine's own ceiling comes first: one child of the space trained by TensorFlow on one thread in
a plain process (no Ray, no nas engine), alone and then as two such processes at once. Two cores that
slow each other down (shared caches, memory bandwidth, a VM's vCPUs) cap the speed-up below 2x
before the engine plays any part: ceiling = 2 x alone / at once.

Writes benchmarks/results/overhead_scaling.json and the "Engine overhead and worker scaling" section
of benchmarks/RESULTS.md. About 27 minutes on 2 cores with the defaults (cnn10 on mnist5k).
`--ceiling-only` measures only the ceiling (about 2 minutes) and reports it beside the searches
already saved in overhead_scaling.json, which must have the same settings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, nas_search, read_summary, read_trials, table, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# One child on one TensorFlow thread, as a nas worker of 1 CPU trains it; prints its seconds.
ONE_CHILD = """
import json, random, sys, time
from nas.quiet import import_tensorflow
import_tensorflow()
from nas.data import load_data
from nas.trainer import configure_threads, train_child
from search_spaces import load_space
configure_threads(1)
space, data = load_space(sys.argv[1]), load_data(sys.argv[2], seed=0)
rng = random.Random(int(sys.argv[4]))
spec = space.resolve(space.architecture([rng.randrange(len(d.choices)) for d in space.decisions]))
metrics = train_child(spec, data.search_arrays(), input_shape=data.input_shape, num_classes=data.num_classes,
                      epochs=int(sys.argv[3]), seed=0)
print(json.dumps(metrics["fit_seconds"]))
"""


def hardware_ceiling(args, seed: int = 3) -> dict:
    """The fit seconds of one child alone and of the same child in two processes at once."""

    def start():
        return subprocess.Popen(
            [sys.executable, "-c", ONE_CHILD, args.space, args.data, str(args.epochs), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def seconds(process) -> float:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit("training one child for the hardware ceiling failed")
        return json.loads(out.strip().splitlines()[-1])

    alone = seconds(start())
    together = [start(), start()]
    at_once = [seconds(p) for p in together]
    return {"alone_fit_seconds": alone, "at_once_fit_seconds": at_once, "ceiling": 2 * alone / (sum(at_once) / 2)}


def search(args, workers: int, runs: Path) -> dict:
    run, _ = nas_search(
        runs,
        f"workers-{workers}",
        "--space",
        args.space,
        "--data",
        args.data,
        "--controller",
        args.controller,
        "--budget",
        str(args.budget),
        "--epochs",
        str(args.epochs),
        "--final-epochs",
        "1",
        "--workers",
        str(workers),
        "--cpus-per-trial",
        "1",
    )
    summary = read_summary(run)
    records = read_trials(run)
    trials = summary["trials_completed"] + summary["trials_failed"] + summary.get("trials_stopped_early", 0)
    slots = workers * summary["search_wall_seconds"]
    in_trials = sum(r.get("seconds") or 0.0 for r in records)
    finished = sorted(datetime.fromisoformat(r["finished"]).timestamp() for r in records)
    tail = sum(finished[-1] - f for f in finished[-workers:-1])  # to the second
    return {
        "workers": workers,
        "search_wall_seconds": summary["search_wall_seconds"],
        "child_fit_seconds": summary["child_fit_seconds"],
        "engine_overhead": summary["engine_overhead"],
        "trials": trials,
        "trials_per_hour": trials / summary["search_wall_seconds"] * 3600,
        "overhead_seconds": {
            "in_trials_outside_fit": in_trials - summary["child_fit_seconds"],
            "tail": tail,
            "outside_trials_before_the_tail": slots - in_trials - tail,
        },
    }


def saved_searches(settings: dict) -> dict:
    """The searches of an earlier run with the same settings (--ceiling-only)."""
    path = RESULTS / "overhead_scaling.json"
    saved = json.loads(path.read_text()) if path.exists() else None
    if saved is None or saved["settings"] != settings:
        raise SystemExit(f"--ceiling-only: {path} has no searches with the settings {settings}; run without it first")
    return saved


def report(args, settings: dict, rows: list[dict], ceiling: dict, searches_date: str | None) -> None:
    speedup = rows[1]["trials_per_hour"] / rows[0]["trials_per_hour"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead_scaling.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "rows": rows,
                "speedup": speedup,
                "searches_date": searches_date,
                "hardware": ceiling,
            },
            indent=1,
        )
    )
    figures = table(
        ["workers", "search wall (s)", "children's fit (s)", "engine overhead (target < 5 %)", "trials per hour"],
        [
            [
                str(r["workers"]),
                f"{r['search_wall_seconds']:.0f}",
                f"{r['child_fit_seconds']:.0f}",
                f"{r['engine_overhead']:.1%}",
                f"{r['trials_per_hour']:.0f}",
            ]
            for r in rows
        ],
    )
    split = [r for r in rows if "overhead_seconds" in r]  # not in searches saved before it was measured
    if split:
        figures += "\n\nWhere the overhead went, in worker-seconds:\n\n" + table(
            ["workers", "in trials, outside fit", "idle at the end (the tail)", "other time outside trials"],
            [
                [
                    str(r["workers"]),
                    *(
                        f"{r['overhead_seconds'][k]:.0f}"
                        for k in ("in_trials_outside_fit", "tail", "outside_trials_before_the_tail")
                    ),
                ]
                for r in split
            ],
        )
    slower = (rows[1]["child_fit_seconds"] / rows[1]["trials"]) / (rows[0]["child_fit_seconds"] / rows[0]["trials"])
    searched = (
        f" The searches were run on {searches_date or 'an earlier day'}; this command measured only the ceiling."
        if args.ceiling_only
        else ""
    )
    body = (
        f"{args.space} on {args.data}, {args.controller} controller, budget {args.budget}, {args.epochs} epochs per "
        f"child, 1 CPU per trial.{searched}\n\n"
        + figures
        + f"\n\nSpeed-up of trials per hour with 2 workers: **{speedup:.2f}x** (target at least 1.7x).\n\n"
        f"The machine's ceiling: one child ({args.epochs} epochs, one TensorFlow thread, no Ray) took "
        f"{ceiling['alone_fit_seconds']:.1f} s alone and "
        f"{' and '.join(f'{t:.1f}' for t in ceiling['at_once_fit_seconds'])} "
        f"s as two processes at once, so two workers can reach about **{ceiling['ceiling']:.2f}x** one "
        f"(the searches reached {speedup / ceiling['ceiling']:.0%} of it); in the searches above a child's "
        f"mean fit took {slower:.2f}x as long with 2 workers as with 1."
    )
    write_section("Engine overhead and worker scaling", command_line(), body)
    print(figures, f"\nspeed-up {speedup:.2f}x, ceiling {ceiling['ceiling']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cnn10")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--controller", default="random")
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--ceiling-only",
        action="store_true",
        help="measure only the machine's ceiling; keep the saved searches of the same settings",
    )
    args = parser.parse_args()
    settings = {k: v for k, v in vars(args).items() if k != "ceiling_only"}
    saved = saved_searches(settings) if args.ceiling_only else None
    ceiling = hardware_ceiling(args)
    print(ceiling, flush=True)
    if saved is not None:
        report(args, settings, saved["rows"], ceiling, saved.get("searches_date"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for workers in (1, 2):
            rows.append(search(args, workers, Path(tmp)))
            print(rows[-1], flush=True)
    report(args, settings, rows, ceiling, date.today().isoformat())


if __name__ == "__main__":
    main()
