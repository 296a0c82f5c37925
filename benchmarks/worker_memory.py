"""Runs many small trials and reports how much the Ray workers' resident memory grew.

    python benchmarks/worker_memory.py --trials 100 [--worker-memory-growth 150] [--report-only]

Each trial reports its worker's RSS (`worker_rss_mb` in trials.jsonl). TensorFlow keeps every
child's graphs, so a worker grows with each child; nas replaces the workers once one has grown by
--worker-memory-growth MB. This reports, per worker process, its memory after its first child and
its largest growth, plus the seconds the search spent. Writes benchmarks/results/worker_memory_<limit>mb.json,
then the "Worker memory" section of benchmarks/RESULTS.md from every limit's saved JSON (`--report-only`:
only that, measuring nothing). About 4 minutes for 100 trials on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, nas_search, read_trials, table, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def report() -> str:
    """The "Worker memory" section from every saved worker_memory_<limit>mb.json, one row a limit."""
    saved = sorted(
        (json.loads(p.read_text()) for p in RESULTS.glob("worker_memory_*mb.json")),
        key=lambda r: r["worker_memory_growth_limit_mb"],
    )
    if not saved:
        raise SystemExit(f"no worker_memory_<limit>mb.json in {RESULTS}: run without --report-only first")
    rows = []
    for r in saved:
        first = [w["rss_after_first_mb"] for w in r["workers"]]
        rows.append(
            [
                str(r["worker_memory_growth_limit_mb"]),
                str(r["trials"]),
                str(r["worker_processes"]),
                f"{min(first)}-{max(first)}",
                str(r["max_growth_mb"]),
                str(r["seconds"]),
                r["date"].replace("T", " ")[:16],
            ]
        )
    body = (
        "dnn on digits, random controller, 1 epoch per child, nas's default workers (one per CPU); each row "
        "one search of the given --worker-memory-growth "
        "(`python benchmarks/worker_memory.py --trials N --worker-memory-growth MB`). "
        "A worker's memory after its first child is mostly TensorFlow; it then grows with every child "
        "trained, until nas replaces the workers.\n\n"
        + table(
            [
                "--worker-memory-growth (MB)",
                "trials",
                "worker processes",
                "RSS after the first child (MB)",
                "largest growth (MB)",
                "search seconds",
                "measured",
            ],
            rows,
        )
    )
    write_section("Worker memory", command_line(), body)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--worker-memory-growth", type=int, default=None, help="MB (default: nas's default)")
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite the RESULTS.md section from the saved JSON files"
    )
    args = parser.parse_args()
    if args.report_only:
        print(report())
        return
    search = [
        "--space",
        "dnn",
        "--data",
        "digits",
        "--controller",
        "random",
        "--budget",
        str(args.trials),
        "--epochs",
        "1",
        "--final-epochs",
        "1",
    ]
    if args.worker_memory_growth:
        search += ["--worker-memory-growth", str(args.worker_memory_growth)]
    with tempfile.TemporaryDirectory() as tmp:
        run, seconds = nas_search(Path(tmp), "memory", *search)
        records = read_trials(run)
        config = json.loads((run / "config.json").read_text())
    by_worker = defaultdict(list)
    for r in sorted(records, key=lambda r: r["trial"]):
        if r["metrics"].get("worker_rss_mb") is not None:
            by_worker[r["pid"]].append(r["metrics"]["worker_rss_mb"])
    workers = [
        {"pid": pid, "trials": len(rss), "rss_after_first_mb": round(rss[0]), "growth_mb": round(max(rss) - rss[0])}
        for pid, rss in by_worker.items()
    ]
    result = {
        "benchmark": "worker_memory",
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(["nas", "search", *search]),
        "trials": len(records),
        "worker_memory_growth_limit_mb": config["worker_memory_growth"],
        "seconds": round(seconds),
        "worker_processes": len(workers),
        "max_growth_mb": max(w["growth_mb"] for w in workers),
        "workers": workers,
    }
    out = RESULTS / f"worker_memory_{config['worker_memory_growth']}mb.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "workers"}, indent=2))
    report()


if __name__ == "__main__":
    main()
