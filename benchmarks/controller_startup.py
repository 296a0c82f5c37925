"""What REINFORCE's TensorFlow graphs cost before they run fast: with and without Grappler, and for
a second controller of the process, which shares them.

    python benchmarks/controller_startup.py [--repeats 3] [--report-only]

The controller's graphs (sampling, and the update: its LSTM unrolled over every step of the space,
the gradient and Adam) are traced and optimised once per controller, so every search pays this at
its first update, and every test that builds a controller. Per space and variant, in a fresh process
each time (TensorFlow's caches empty, one thread per op as in a search's driver): the first ask the
policy answers (its sampling graph), the first update (the update graph), and the mean of the next
20 updates, once the graphs are built. "optimised" runs the graphs through Grappler as TensorFlow
does by default (the controller before this benchmark); "unoptimised" is today's controller, whose
graphs skip it (controllers/policy_network.py, `unoptimised`). Both variants build no scoring graph for
an update any more: PPO's reference log-probabilities come from the update's own first step. Then a
second controller of the same space and settings (another seed) in the same process, as `nas bench
run`, the benchmarks' replays and the tests build them: its first update with the graphs the first
built (today), and a third's with the graphs built anew (each controller traced its own before).
Writes benchmarks/results/controller_startup.json and the "Controller start-up" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import PROJECT, finish, table  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "controller_startup.json"
SPACES = ("cnn10", "bench_cnn", "dnn")
VARIANTS = ("optimised", "unoptimised")

# Run in a child process: prints one JSON line of seconds.
MEASURE = """
import contextlib, json, os, statistics, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from controllers import make_controller, policy_network
from search_spaces import load_space
space_name, variant = sys.argv[1], sys.argv[2]
if variant == "optimised":
    policy_network.unoptimised = contextlib.nullcontext
space = load_space(space_name)
controller = make_controller("reinforce", space, seed=0, budget=200)
rng = np.random.default_rng(0)
def tell(arch):
    start = time.perf_counter()
    controller.tell(arch, float(rng.random()))
    return time.perf_counter() - start
def until_first_update():
    while not controller.log:  # the warm-up's random children, told until the first update
        took = tell(controller.ask())
    return took
first_update = until_first_update()
start = time.perf_counter()
arch = controller.ask()  # the first the policy answers
first_ask = time.perf_counter() - start
tell(arch)
updates, steady = len(controller.log), []
while len(controller.log) < updates + 20:
    arch = controller.ask()
    took = tell(arch)
    if len(controller.log) > updates + len(steady):
        steady.append(took)
controller = make_controller("reinforce", space, seed=1, budget=200)
shared = until_first_update()
policy_network._shared.cache_clear()
controller = make_controller("reinforce", space, seed=2, budget=200)
rebuilt = until_first_update()
print(json.dumps({"first_ask": first_ask, "first_update": first_update, "update": statistics.mean(steady),
                  "second_shared": shared, "second_rebuilt": rebuilt}))
"""


def measure(space: str, variant: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, space, variant], capture_output=True, text=True, cwd=PROJECT, check=False
    )
    if done.returncode:
        raise SystemExit(f"{space} {variant}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(result: dict) -> str:
    rows = []
    for space in SPACES:
        for variant in VARIANTS:
            runs = result["runs"].get(f"{space} {variant}", [])
            if not runs:
                continue
            rows.append(
                [
                    f"`{space}`",
                    variant,
                    f"{statistics.median(r['first_ask'] for r in runs):.2f}",
                    f"{statistics.median(r['first_update'] for r in runs):.2f}",
                    f"{statistics.median(r['update'] for r in runs) * 1000:.0f}",
                    *(
                        f"{statistics.median(r[key] for r in runs):.2f}" if all(key in r for r in runs) else ""
                        for key in ("second_shared", "second_rebuilt")
                    ),
                ]
            )
    text = (
        f"Medians over {result['repeats']} fresh processes each (one thread per op, as a search's driver); "
        "a controller with budget 200 (a warm-up of 5, then updates in batches of 2 children, 4 PPO steps each). "
        "The first ask and update build the graphs; later updates run them. A second controller of the "
        "process (another seed): its first update with the graphs shared, and with them built anew (as every "
        "controller did before they were shared).\n\n"
        + table(
            [
                "space",
                "graphs",
                "first policy ask (s)",
                "first update (s)",
                "later update (ms)",
                "second controller's first update, shared (s)",
                "the same, graphs built anew (s)",
            ],
            rows,
        )
    )
    return text + ("\n\n" + result["notes"] if result.get("notes") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", help="conditions of the measurement, printed under the table")
    args = parser.parse_args()
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    if args.note:
        result["notes"] = args.note
    if not args.report_only:
        result.update(repeats=args.repeats, runs={})
        for _ in range(args.repeats):  # variants interleaved: a change in the machine's load hits both
            for space in SPACES:
                for variant in VARIANTS:
                    result["runs"].setdefault(f"{space} {variant}", []).append(measure(space, variant))
                    print(space, variant, result["runs"][f"{space} {variant}"][-1], flush=True)
    finish(OUT, result, "Controller start-up", report, measured=not args.report_only)


if __name__ == "__main__":
    main()
