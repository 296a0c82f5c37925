"""Where the test suite's time goes: the README's test command, with the CPU of every process it starts.

    python benchmarks/suite_cpu.py [--pytest-args "-n 3"] [--report-only]

Runs `pytest --durations=0` (the README's command: two xdist workers) with benchmarks/suite_cpu/ on
PYTHONPATH, whose sitecustomize makes every Python process (the xdist workers, each `nas` command a
test runs, each Ray worker and agent) log its CPU seconds, whether it imported TensorFlow and the test
that started it. Reports the wall time, the CPU by kind of process and by test module, and the
costliest tests. On two cores the suite is CPU-bound: its wall time is about its CPU seconds over two,
so a test pays for itself in CPU seconds, waits aside. Ray's C++ processes (raylet, GCS) are not
counted. Writes benchmarks/results/suite_cpu.json and the "Test suite" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import PROJECT, finish, table  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "suite_cpu.json"
LOGGER = Path(__file__).resolve().parent / "suite_cpu"


def kind(command: str) -> str:
    if "default_worker" in command:
        return "Ray worker"
    if "nas/cli.py" in command or "nas.cli" in command:
        return f"nas {command.split()[1]}" if len(command.split()) > 1 else "nas"
    if command.startswith("-c") or "pytest" in command or "xdist" in command:
        return "pytest worker or python -c"
    if "ray" in command or "dashboard" in command or "agent" in command:
        return "Ray's other Python processes"
    return "other: " + Path(command.split()[0]).name if command else "other"


def collect(folder: Path) -> list[dict]:
    rows = []
    for path in folder.glob("*.tsv"):
        fields = path.read_text().rstrip("\n").split("\t")
        if len(fields) == 4:
            cpu, tensorflow, test, command = fields
            rows.append({"cpu": float(cpu), "tensorflow": tensorflow == "1", "test": test, "command": command})
    return rows


def durations(output: str) -> dict[str, float]:
    """Per test module, the seconds pytest's --durations=0 gives its tests (setup, call, teardown)."""
    modules = collections.Counter()
    for line in output.splitlines():
        match = re.match(r"^([0-9.]+)s (?:call|setup|teardown)\s+(tests/[^:]+)::", line)
        if match:
            modules[match.group(2)] += float(match.group(1))
    return dict(modules)


def measure(pytest_args: list[str]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="nas-cpu-"))
    path = [str(LOGGER), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "NAS_CPU_LOG": str(folder), "PYTHONPATH": os.pathsep.join(path)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--durations=0", *pytest_args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    rows = collect(folder)
    by_kind, count = collections.Counter(), collections.Counter()
    by_module, by_test = collections.Counter(), collections.Counter()
    for row in rows:
        by_kind[kind(row["command"])] += row["cpu"]
        count[kind(row["command"])] += 1
        by_module[row["test"].split("::")[0]] += row["cpu"]
        by_test[row["test"].split("@")[0]] += row["cpu"]
    return {
        "pytest_args": pytest_args,
        "exit_code": done.returncode,
        "result": last.strip("= "),
        "wall_seconds": wall,
        "cpu_seconds": sum(r["cpu"] for r in rows),
        "processes": len(rows),
        "tensorflow_processes": sum(r["tensorflow"] for r in rows),
        "by_kind": {k: {"cpu": v, "processes": count[k]} for k, v in by_kind.most_common()},
        "by_module_subprocesses": dict(by_module.most_common()),
        "by_test_subprocesses": dict(by_test.most_common(25)),
        "durations_by_module": durations(done.stdout),
    }


def report(result: dict) -> str:
    parts = []
    for run in result["runs"]:
        kinds = table(
            ["process", "count", "CPU s"],
            [[k, str(v["processes"]), f"{v['cpu']:.0f}"] for k, v in run["by_kind"].items() if v["cpu"] >= 5],
        )
        modules = sorted(run["durations_by_module"].items(), key=lambda kv: -kv[1])[:15]
        module_rows = [
            [f"`{m}`", f"{seconds:.0f}", f"{run['by_module_subprocesses'].get(m, 0):.0f}"] for m, seconds in modules
        ]
        parts.append(
            f"`pytest {' '.join(run['pytest_args'])}`: {run['result']}; wall {run['wall_seconds'] / 60:.1f} min; "
            f"CPU of its Python processes {run['cpu_seconds']:.0f} s in {run['processes']} processes "
            f"({run['tensorflow_processes']} of them imported TensorFlow).\n\n"
            + kinds
            + "\n\nThe 15 longest modules: their tests' seconds (setup, call, teardown, as --durations gives them; "
            "the xdist workers run modules side by side) and the CPU of the processes they started (an xdist "
            "worker's own CPU is not split by test):\n\n"
            + table(["module", "test seconds", "CPU s of its subprocesses"], module_rows)
        )
    notes = "\n\n" + result["notes"] if result.get("notes") else ""
    return "\n\n".join(parts) + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pytest-args", default="", help="added to `pytest --durations=0`, say '-n 3'")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", help="conditions of the measurement, printed under the tables")
    args = parser.parse_args()
    result = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    if args.note:
        result["notes"] = args.note
    if not args.report_only:
        run = measure(shlex.split(args.pytest_args))
        result["runs"] = [r for r in result["runs"] if r["pytest_args"] != run["pytest_args"]] + [run]
        print(json.dumps({k: run[k] for k in ("result", "wall_seconds", "cpu_seconds")}), flush=True)
    finish(OUT, result, "Test suite", report, measured=not args.report_only)


if __name__ == "__main__":
    main()
