"""Kills the driver of a real search with SIGKILL at random moments, resumes it each time, and checks
that exactly the budget's trials finished, numbered 1..N, with no architecture trained twice.

    python benchmarks/kill_resume.py --repetitions 10

Writes benchmarks/results/kill_resume.json. About 2-3 minutes a repetition on 2 cores.
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
from test_kill import kill_and_resume  # noqa: E402  the test's procedure, repeated


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    outcomes = []
    for seed in range(args.repetitions):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            try:
                run, kills = kill_and_resume(Path(tmp), args.budget, args.kills, random.Random(seed))
                problems = check(run, args.budget)
            except AssertionError as e:  # the last session did not finish: say why, go on with the next
                kills, problems = None, [f"the last session failed: {str(e).strip().splitlines()[-1][:300]}"]
            outcomes.append({"seed": seed, "kills": kills, "ok": not problems, "problems": problems,
                             "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(outcomes[-1]), flush=True)
    result = {"benchmark": "kill_resume", "date": datetime.now().isoformat(timespec="seconds"),
              "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
              "budget": args.budget, "kills_per_repetition": args.kills, "repetitions": outcomes,
              "passed": sum(o["ok"] for o in outcomes), "total_kills": sum(o["kills"] or 0 for o in outcomes)}
    out = Path(__file__).parent / "results" / "kill_resume.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['passed']}/{len(outcomes)} repetitions correct after {result['total_kills']} kills; {out}")


if __name__ == "__main__":
    main()
