"""Kills the driver of a real search with SIGKILL at random moments, resumes it each time, and checks
that exactly the budget's trials finished, numbered 1..N, with no architecture trained twice.

    python benchmarks/kill_resume.py --repetitions 10 [--report-only]

Writes benchmarks/results/kill_resume.json and the "Kill and resume" section of benchmarks/RESULTS.md
(`--report-only`: only the section, from the saved JSON). About 2-3 minutes a repetition on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, write_section  # noqa: E402
from test_kill import kill_and_resume  # noqa: E402  the test's procedure, repeated

OUT = Path(__file__).resolve().parent / "results" / "kill_resume.json"


def check(run: Path, budget: int) -> list[str]:
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    problems = []
    if sorted(r["trial"] for r in records) != list(range(1, budget + 1)):
        problems.append(f"trial numbers {sorted(r['trial'] for r in records)}")
    if len({r["hash"] for r in records}) != len(records):
        problems.append("an architecture trained twice")
    if summary["trials_completed"] + summary["trials_failed"] != len(records):
        problems.append("summary counts differ from trials.jsonl")
    return problems


def report() -> str:
    """The "Kill and resume" section, from the saved JSON."""
    if not OUT.exists():
        raise SystemExit(f"no {OUT}: run without --report-only first")
    saved = json.loads(OUT.read_text())
    runs = saved["repetitions"]
    failed = [f"seed {r['seed']}: {'; '.join(r['problems'])}" for r in runs if not r["ok"]]
    body = (
        f"Measured {saved['date'].replace('T', ' ')[:16]}. A search (linear on digits, 1-epoch children, budget "
        f"{saved['budget']}) had its driver SIGKILLed {saved['kills_per_repetition']} times at random moments and "
        f"was resumed each time: **{saved['passed']} of {len(runs)}** repetitions ended with exactly "
        f"{saved['budget']} trials, numbered 1..{saved['budget']}, no architecture trained twice, and a summary "
        f"that agrees with trials.jsonl ({saved['total_kills']} kills in all; "
        f"{min(r['seconds'] for r in runs):.0f}-{max(r['seconds'] for r in runs):.0f} s a repetition)."
        + "".join(f"\n- {line}" for line in failed)
    )
    write_section("Kill and resume", command_line(), body)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--report-only", action="store_true", help="only rewrite the RESULTS.md section from the JSON")
    args = parser.parse_args()
    if args.report_only:
        print(report())
        return
    outcomes = []
    for seed in range(args.repetitions):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            try:
                run, kills = kill_and_resume(Path(tmp), args.budget, args.kills, random.Random(seed))
                problems = check(run, args.budget)
            except AssertionError as e:  # the last session did not finish: say why, go on with the next
                kills, problems = None, [f"the last session failed: {str(e).strip().splitlines()[-1][:300]}"]
            outcomes.append(
                {
                    "seed": seed,
                    "kills": kills,
                    "ok": not problems,
                    "problems": problems,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            print(json.dumps(outcomes[-1]), flush=True)
    result = {
        "benchmark": "kill_resume",
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "budget": args.budget,
        "kills_per_repetition": args.kills,
        "repetitions": outcomes,
        "passed": sum(o["ok"] for o in outcomes),
        "total_kills": sum(o["kills"] or 0 for o in outcomes),
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['passed']}/{len(outcomes)} repetitions correct after {result['total_kills']} kills; {OUT}")
    report()


if __name__ == "__main__":
    main()
