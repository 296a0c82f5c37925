"""Tabular benchmarks: train every architecture of a small space once per seed, then replay
controllers against the stored results in seconds (the project's own NAS-Bench).

    table = build_table(load_space("bench_cnn"), "benchmarks/tables/bench_cnn.json.gz",
                        data="digits", seeds=3, epochs=4)                  # tens of minutes
    table = load_table("bench_cnn")                        # a name under benchmarks/tables/, or a path
    results = replay(table, ["random", "reinforce", "evolution"], seeds=20, budget=100)
    print(format_results(results)); plot_curves(results, "curves.png")

A build appends one line per finished (architecture, seed) to `<out>.progress.jsonl` (fsynced), so
a killed build continues where it stopped; the compiled table is written at the end, atomically.
Every child trains on the same split of the data (split seed 0); the seed seeds its training.

A replay asks each controller for architectures and answers with the table's validation accuracy
of one of the architecture's seeds, picked at random, as a search would see a noisy child. An
architecture asked again is told its known reward without spending budget, as `nas.search_state` does.
No training and no Ray: controllers come from `controllers.make_controller` by name.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.errors import InputError
from nas.landscapes import EXAMPLE as NK_EXAMPLE
from nas.landscapes import NKLandscape, is_landscape, load_landscape
from nas.objective import Objective
from nas.progress import reporter
from nas.rundir import append_json_line, write_atomic
from search_spaces import Architecture, SearchSpace, SpaceError, iter_architectures, parse_space

if TYPE_CHECKING:
    from controllers.base import Controller

FORMAT = 1
TABLES_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "tables"
MAX_ARCHITECTURES = 5_000  # a table trains every architecture: more is a typo, not a benchmark
SPLIT_SEED = 0  # every child of a table sees the same train / validation / test split
BUDGETS = (25, 50, 100)  # where best-so-far test accuracy is reported
TOP_FRACTION = 0.01


# -- building --------------------------------------------------------------------------------------


def progress_path(out: str | Path) -> Path:
    """Where a build of `out` keeps its finished results: `NAME.progress.jsonl` beside `NAME.json.gz`."""
    out = Path(out)
    stem = out.name[: -len(".json.gz")] if out.name.endswith(".json.gz") else out.stem
    return out.with_name(stem + ".progress.jsonl")


def build_table(
    space: SearchSpace, out: str | Path, *, data: str = "digits", seeds: int = 3, epochs: int = 4, workers: int = 1
) -> dict[str, Any]:
    """Trains every architecture of `space` once per seed (0..seeds-1) and writes the table to `out`
    (.json.gz). Resumes from `out`'s progress file; `workers` processes train at once."""
    out = Path(out)
    if not out.name.endswith(".json.gz"):
        raise InputError(f"out: got {str(out)!r}, expected a file name ending in .json.gz")
    if seeds < 1 or epochs < 1 or workers < 1:
        raise InputError(f"--seeds, --epochs, --workers: got {seeds}, {epochs}, {workers}, expected integers >= 1")
    size = space.size()
    if size > MAX_ARCHITECTURES:
        raise InputError(
            f"space: {space.source}: {space.describe_size()} architectures, expected at most "
            f"{MAX_ARCHITECTURES:,} for a table that trains every one"
        )
    from nas.data import load_data

    dataset = load_data(data, seed=SPLIT_SEED, stream=False)  # checked here, before any worker starts
    header = {
        "format": FORMAT,
        "space_fingerprint": space.fingerprint(),
        "data": data,
        "epochs": epochs,
        "split_seed": SPLIT_SEED,
    }
    progress = progress_path(out)
    done = _read_progress(progress, header)
    archs = list(iter_architectures(space))
    index = {a.choices: i for i, a in enumerate(archs)}
    finished = {(i, r["seed"]) for i, results in done.items() for r in results}
    todo = [(i, seed) for seed in range(seeds) for i in range(len(archs)) if (i, seed) not in finished]
    reporter().text(
        f"{space.name}: {len(archs)} architectures x {seeds} seeds on {dataset.describe()}; "
        f"{epochs} epochs each; {len(archs) * seeds - len(todo)} done already, {len(todo)} to train with "
        f"{workers} process(es)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not progress.exists() or progress.stat().st_size == 0:
        append_json_line(progress, header)
    start = time.perf_counter()
    tasks = [(i, list(archs[i].choices), space.resolve(archs[i], searched=True), seed) for i, seed in todo]
    for n, record in enumerate(_train_all(tasks, data, epochs, workers), start=1):
        append_json_line(progress, record)
        done.setdefault(index[tuple(record["choices"])], []).append(record)
        if n % 10 == 0 or n == len(tasks):
            rate = (time.perf_counter() - start) / n
            reporter().text(
                f"  {n}/{len(tasks)} trained, {rate:.1f} s each, about {rate * (len(tasks) - n) / 60:.0f} min left"
            )
    table = _compile(space, archs, done, header, seeds)
    write_atomic(out, gzip.compress(json.dumps(table, separators=(",", ":")).encode(), mtime=0))
    reporter().text(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB); the progress file {progress} may be deleted")
    return table


def _read_progress(path: Path, header: Mapping[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Finished results by architecture index. A last line torn by a kill is cut off the file (once
    the file is known to be this build's): that child trains again."""
    if not path.exists():
        return {}
    text = path.read_bytes()
    whole = text[: text.rfind(b"\n") + 1]  # without a torn last line
    records = []
    for n, line in enumerate(whole.decode("utf-8", "replace").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(
                f"{path}: line {n}: not JSON, expected the progress lines of a table build "
                "(delete the file to start over)"
            ) from None
    if records:
        for key, value in header.items():
            if records[0].get(key) != value:
                raise InputError(
                    f"{path}: a build with {key} {records[0].get(key)!r} is in progress, got {value!r}; "
                    "expected the same space, --data and --epochs to continue it (or delete the file to "
                    "start over)"
                )
    if len(whole) < len(text):
        with path.open("r+b") as f:
            f.truncate(len(whole))
    done: dict[int, list[dict[str, Any]]] = {}
    for r in records[1:]:
        done.setdefault(r["index"], []).append(r)
    return done


def _train_all(tasks: list[tuple], data: str, epochs: int, workers: int) -> Iterable[dict[str, Any]]:
    """Trains the tasks in this process (workers=1) or in a pool of processes, yielding results as
    they finish. Pool workers are replaced every 40 children: TensorFlow keeps each child's graphs."""
    if not tasks:
        return
    if workers == 1:
        _worker_start(data)
        yield from map(_train_one, [(*t, epochs) for t in tasks])
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
    pool = context.Pool(workers, initializer=_worker_start, initargs=(data,), maxtasksperchild=40)
    try:
        yield from pool.imap_unordered(_train_one, [(*t, epochs) for t in tasks])
    finally:
        pool.terminate()
        pool.join()


_DATA = None


def _worker_start(data: str) -> None:
    global _DATA
    from nas.data import load_data
    from nas.quiet import import_tensorflow
    from nas.trainer import configure_threads

    import_tensorflow()
    configure_threads(1)
    _DATA = load_data(data, seed=SPLIT_SEED, stream=False)


def _train_one(task: tuple) -> dict[str, Any]:
    from nas.trainer import ChildFailed, train_child

    index, choices, spec, seed, epochs = task
    record = {"index": index, "choices": choices, "seed": seed}
    try:
        metrics = train_child(
            spec,
            _DATA.search_arrays(),
            input_shape=_DATA.input_shape,
            num_classes=_DATA.num_classes,
            epochs=epochs,
            seed=seed,
            test=(_DATA.x_test, _DATA.y_test),
        )
    except ChildFailed as e:  # a diverging child scores 0 (none did in the shipped table)
        return {**record, "val_accuracy": 0.0, "test_accuracy": 0.0, "params": 0, "fit_seconds": 0.0, "error": str(e)}
    return {
        **record,
        **{k: metrics[k] for k in ("val_accuracy", "test_accuracy", "params")},
        "fit_seconds": round(metrics["fit_seconds"], 3),
    }


def _compile(
    space: SearchSpace,
    archs: list[Architecture],
    done: Mapping[int, list[dict[str, Any]]],
    header: Mapping[str, Any],
    seeds: int,
) -> dict[str, Any]:
    rows = []
    for i, arch in enumerate(archs):
        by_seed = {r["seed"]: r for r in done.get(i, []) if r["seed"] < seeds}
        missing = [s for s in range(seeds) if s not in by_seed]
        if missing:
            raise RuntimeError(f"architecture {i} has no result for seeds {missing}")
        results = [by_seed[s] for s in range(seeds)]
        rows.append(
            {
                "choices": list(arch.choices),
                "params": results[0]["params"],
                "val_accuracy": [round(r["val_accuracy"], 6) for r in results],
                "test_accuracy": [round(r["test_accuracy"], 6) for r in results],
                "fit_seconds": [r["fit_seconds"] for r in results],
            }
        )
    from importlib.metadata import version

    return {
        "format": FORMAT,
        "space": {
            "name": space.name,
            "fingerprint": space.fingerprint(),
            "text": space.text,
            "decisions": [d.name for d in space.decisions],
            "size": len(archs),
        },
        "data": header["data"],
        "split_seed": header["split_seed"],
        "epochs": header["epochs"],
        "seeds": list(range(seeds)),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": version("tensorflow"),
        },
        "architectures": rows,
    }


# -- reading a table -------------------------------------------------------------------------------


@dataclass
class Table:
    """A compiled table: per architecture (in `iter_architectures` order) and seed, its accuracies."""

    path: Path
    meta: dict[str, Any]  # everything but the rows: space, data, epochs, seeds, created, machine
    space: SearchSpace
    archs: list[Architecture]
    val: np.ndarray  # [architectures, seeds] validation accuracy
    test: np.ndarray  # [architectures, seeds] test accuracy of the same trained model
    params: np.ndarray  # [architectures]
    fit_seconds: np.ndarray  # [architectures, seeds]

    def __post_init__(self) -> None:
        self.index = {arch: i for i, arch in enumerate(self.archs)}
        self.mean_test = self.test.mean(axis=1)
        top = math.ceil(TOP_FRACTION * len(self.archs))
        self.top_threshold = float(np.sort(self.mean_test)[::-1][top - 1])
        # Ties with the last of the top 1 % count too; 1e-5 is well below the 1 / (test images x seeds)
        # that separates two means, and above float32's rounding of the stored accuracies.
        self.top = self.mean_test >= self.top_threshold - 1e-5

    def quality(self, arch: Architecture) -> float:
        """The architecture's test accuracy, averaged over the table's seeds."""
        return float(self.mean_test[self.index[arch]])

    def is_top(self, arch: Architecture) -> bool:
        return bool(self.top[self.index[arch]])

    def observe(self, arch: Architecture, rng: np.random.Generator) -> tuple[float, int]:
        """One evaluation: the validation accuracy of one of the architecture's seeds, and its parameters."""
        i = self.index[arch]
        return float(self.val[i, rng.integers(self.val.shape[1])]), int(self.params[i])

    def summary(self) -> dict[str, Any]:
        """What a replay's results say about the table."""
        return {
            "table": str(self.path),
            "space": self.space.name,
            "architectures": len(self.archs),
            "table_seeds": len(self.meta["seeds"]),
            "data": self.meta["data"],
            "epochs": self.meta["epochs"],
            "top1pct_threshold": self.top_threshold,
            "top1pct_architectures": int(self.top.sum()),
            "best_mean_test": float(self.mean_test.max()),
        }

    def describe(self) -> str:
        m = self.meta
        return (
            f"{self.space.name}: {len(self.archs)} architectures x {len(m['seeds'])} seeds, {m['data']}, "
            f"{m['epochs']} epochs; top 1 %: {int(self.top.sum())} architectures (ties included) with mean test "
            "accuracy >= "
            f"{self.top_threshold:.4f} (best {self.mean_test.max():.4f}, median {np.median(self.mean_test):.4f})"
        )


def table_path(name_or_path: str | Path) -> Path:
    """A table by name (`bench_cnn`: benchmarks/tables/bench_cnn.json.gz) or by path."""
    text = str(name_or_path)
    if text.endswith(".json.gz") or "/" in text:
        return Path(text)
    return TABLES_DIR / f"{text}.json.gz"


def load_table(name_or_path: str | Path) -> Table | NKLandscape:
    """Reads and checks a table written by `build_table`; errors name the file and what is wrong.
    `nk:n=8,c=4,k=2,...` names a synthetic landscape instead (`nas.landscapes`)."""
    if is_landscape(name_or_path):
        return load_landscape(str(name_or_path))
    path = table_path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.name[: -len(".json.gz")] for p in TABLES_DIR.glob("*.json.gz"))) or "none"
        raise InputError(
            f"table: {name_or_path}: no such table, expected a table name ({known}), the path of a "
            f".json.gz file written by nas bench build, or a synthetic landscape such as {NK_EXAMPLE}"
        )
    try:
        with gzip.open(path, "rt") as f:
            data = json.load(f)
        rows = data["architectures"]
        seeds = len(data["seeds"])
        space = parse_space(data["space"]["text"], source=f"{path}: space")
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        if isinstance(e, SpaceError):
            raise InputError(str(e)) from None
        raise InputError(
            f"table: {path}: not a readable table ({type(e).__name__}: {e}), expected a .json.gz file "
            "written by nas bench build"
        ) from None
    if data.get("format") != FORMAT or space.fingerprint() != data["space"].get("fingerprint"):
        raise InputError(
            f"table: {path}: format {data.get('format')!r} or space fingerprint does not match, "
            f"expected format {FORMAT} written by this version of nas bench build"
        )
    archs = [space.architecture(r["choices"]) for r in rows]
    if len(set(archs)) != space.size() or any(len(r["val_accuracy"]) != seeds for r in rows):
        raise InputError(
            f"table: {path}: {len(rows)} rows for {space.size()} architectures x {seeds} seeds, "
            "expected one row per architecture with a result per seed"
        )
    meta = {k: v for k, v in data.items() if k != "architectures"}
    return Table(
        path,
        meta,
        space,
        archs,
        np.array([r["val_accuracy"] for r in rows], float),
        np.array([r["test_accuracy"] for r in rows], float),
        np.array([r["params"] for r in rows]),
        np.array([r["fit_seconds"] for r in rows], float),
    )


def with_space(table: Table | NKLandscape, space: SearchSpace) -> Table:
    """The table with another copy of its space, whose `controller:` section configures the controllers
    of a replay (a space's fingerprint leaves that section out); the decisions must be the table's."""
    if isinstance(table, NKLandscape):
        raise InputError(f"space: {space.source}: applies to a trained table, not to the synthetic {table.p.name}")
    if space.fingerprint() != table.space.fingerprint():
        raise InputError(
            f"space: {space.source}: its decisions or training differ from those of the table's space "
            f"{table.space.name!r} (fingerprint {space.fingerprint()}, expected "
            f"{table.space.fingerprint()}); expected the space the table was built from"
        )
    return dataclasses.replace(table, space=space)


# -- replaying controllers -------------------------------------------------------------------------


def replay_one(
    table: Table | NKLandscape,
    name: str,
    seed: int,
    budget: int,
    reuse: Controller | None = None,
    objective: Objective | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One search of `budget` trials by controller `name` (seeded with `seed`) against the table.
    Returns the trial that first trained a top-1 % architecture (None: never) and, after each trial,
    the mean test accuracy of the architecture with the best reward so far (the winner), and the
    winner's parameters. The reward is the validation accuracy, or `objective`'s reward of it and
    the architecture's parameters. `overrides` are controller settings over the space file's.

    With `reuse`, a controller of the same name and settings from an earlier replay, that controller
    is loaded with a fresh one's state and used instead: the same search (the state contract), without
    tracing REINFORCE's TensorFlow graphs again (3 s of its 4 s)."""
    from controllers import make_controller
    from controllers.base import ControllerExhausted
    from nas.search_state import MAX_CONSECUTIVE_DUPLICATES

    objective = objective or Objective()
    controller = make_controller(name, table.space, seed=seed, budget=budget, overrides=overrides)
    if reuse is not None:
        reuse.load(controller.state())
        controller = reuse
    pick = np.random.default_rng([seed, 7])  # which seed's result a trial sees
    rewards: dict[Architecture, float] = {}
    curve: list[float] = []
    first_top, best, duplicates, repeats, winner_params = None, -math.inf, 0, 0, None
    try:
        while len(curve) < budget and repeats < MAX_CONSECUTIVE_DUPLICATES:
            arch = controller.ask()
            if arch in rewards:  # trained already: told its known reward, no budget spent (as nas.search_state)
                controller.tell(arch, rewards[arch])
                duplicates += 1
                repeats += 1
                continue
            repeats = 0
            accuracy, params = table.observe(arch, pick)
            reward = rewards[arch] = objective.reward({"val_accuracy": accuracy, "params": params})
            controller.tell(arch, reward)
            if reward > best:
                best, best_test, winner_params = reward, table.quality(arch), params
            curve.append(best_test)
            if first_top is None and table.is_top(arch):
                first_top = len(curve)
    except ControllerExhausted:
        pass
    stopped = len(curve) < budget
    curve += [curve[-1] if curve else math.nan] * (budget - len(curve))  # a run that stopped keeps its best
    return {
        "trials_to_top1pct": first_top,
        "curve": curve,
        "winner_params": winner_params,
        "trained": len(rewards),
        "duplicates": duplicates,
        "stopped_early": stopped,
        "settings": controller.settings_json(),
        "controller": controller,
    }


def check_objective(table: Table | NKLandscape, objective: Objective) -> None:
    """Refuses an objective the table cannot answer."""
    if objective.per_class:
        raise InputError(
            f"objective: got {objective.kind!r}, expected accuracy or accuracy-params: a table holds no "
            "per-class metrics"
        )
    if isinstance(table, NKLandscape) and objective.kind != "accuracy":
        raise InputError(
            f"objective: got {objective.kind!r}, expected accuracy: a synthetic landscape has no parameters"
        )
    if objective.kind not in ("accuracy", "accuracy-params"):
        raise InputError(
            f"objective: got {objective.kind!r}, expected accuracy or accuracy-params: a table holds no latencies"
        )


def replay(
    table: Table | NKLandscape,
    controllers: Sequence[str | tuple[str, str, Mapping[str, Any]]],
    seeds: int = 20,
    budget: int = 100,
    objective: Objective | None = None,
    first_seed: int = 0,
) -> dict[str, Any]:
    """Replays each controller `seeds` times (seeds first_seed.. on) with `budget` trials. A run that
    never trains a top-1 % architecture counts as budget + 1 trials. A controller is a name, or a
    (label, name, settings) triple: the controller `name` with those settings over the space file's."""
    objective = objective or Objective()
    check_objective(table, objective)
    results: dict[str, Any] = {}
    at = [b for b in BUDGETS if b < budget] + [budget]
    for entry in controllers:
        label, name, overrides = (entry, entry, None) if isinstance(entry, str) else entry
        start = time.perf_counter()
        runs = []
        for seed in range(first_seed, first_seed + seeds):
            runs.append(
                replay_one(
                    table,
                    name,
                    seed,
                    budget,
                    reuse=runs[0]["controller"] if runs else None,
                    objective=objective,
                    overrides=overrides,
                )
            )
        seconds = time.perf_counter() - start
        trials = np.array([r["trials_to_top1pct"] or budget + 1 for r in runs], float)
        curves = np.array([r["curve"] for r in runs])
        results[label] = {
            "settings": runs[0]["settings"],
            "median_trials_to_top1pct": float(np.median(trials)),
            "iqr_trials_to_top1pct": [float(q) for q in np.percentile(trials, [25, 75])],
            "runs_reaching_top1pct": int(sum(r["trials_to_top1pct"] is not None for r in runs)),
            "best_test_at": {str(b): round(float(curves[:, b - 1].mean()), 5) for b in at},
            "median_winner_params": float(np.median([r["winner_params"] for r in runs])),
            "mean_best_test_curve": [round(float(v), 5) for v in curves.mean(axis=0)],
            "trials_to_top1pct": [r["trials_to_top1pct"] for r in runs],
            "runs_stopped_early": int(sum(r["stopped_early"] for r in runs)),
            "duplicates_told": int(sum(r["duplicates"] for r in runs)),
            "seconds": round(seconds, 2),
        }
        reporter().text(f"  {label}: {seconds:.1f} s ({seconds / seeds:.2f} s a run)")
    return {
        **table.summary(),
        "seeds": seeds,
        "first_seed": first_seed,
        "budget": budget,
        "objective": objective.describe(),
        "controllers": results,
    }


def format_results(results: Mapping[str, Any]) -> str:
    """The replay's table, as `nas bench run` prints it."""
    budget, seeds = results["budget"], results["seeds"]
    at = list(next(iter(results["controllers"].values()))["best_test_at"]) if results["controllers"] else []
    header = (
        f"{'controller':<13} {'trials to top 1 %':>17} {'IQR':>12} {'reached':>8} "
        + " ".join(f"{'test@' + b:>8}" for b in at)
        + f" {'params':>8} {'seconds':>8}"
    )
    lines = [header, "-" * len(header)]
    for name, r in results["controllers"].items():
        iqr = "[{:g}, {:g}]".format(*r["iqr_trials_to_top1pct"])
        lines.append(
            f"{name:<13} {r['median_trials_to_top1pct']:>17g} {iqr:>12} "
            f"{str(r['runs_reaching_top1pct']) + '/' + str(seeds):>8} "
            + " ".join(f"{r['best_test_at'][b]:>8.4f}" for b in at)
            + f" {r['median_winner_params']:>8.0f} {r['seconds']:>8.1f}"
        )
    lines.append(
        f"Median over {seeds} runs of {budget} trials; a run that never trained a top-1 % architecture "
        f"(see 'reached') counts as {budget + 1}. test@N: after N trials, the mean test accuracy (over the "
        f"table's seeds) of the architecture with the best reward ({results['objective']}) so far, averaged "
        f"over runs; the table's best is {results['best_mean_test']:.4f}. params: the final winner's, "
        "median over runs."
    )
    return "\n".join(lines)


def plot_curves(results: Mapping[str, Any], path: str | Path) -> None:
    """A PNG of each controller's mean regret against trials: the table's best mean test accuracy
    minus that of the best-so-far architecture, on a log scale (as NAS-Bench papers plot it)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    best = results["best_mean_test"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, r in results["controllers"].items():
        regret = np.maximum(best - np.array(r["mean_best_test_curve"]), 1e-4)  # a log scale: never 0
        ax.plot(
            range(1, len(regret) + 1),
            regret,
            label=f"{name} (median {r['median_trials_to_top1pct']:g} trials to top 1 %)",
        )
    ax.axhline(
        max(best - results["top1pct_threshold"], 1e-4), color="grey", linestyle="--", linewidth=1, label="top 1 %"
    )
    ax.set_yscale("log")
    ax.set_xlabel("trials (architectures trained)")
    ax.set_ylabel("regret: best test accuracy - best-so-far's")
    ax.set_title(f"{results['space']}: {results['architectures']} architectures, mean of {results['seeds']} runs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
