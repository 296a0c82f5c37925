"""Against Keras Tuner: its RandomSearch and BayesianOptimization tuners and nas's random, evolution, reinforce.

The same space, data split, child epochs and budget for all, several seeds, one script run:

    python benchmarks/keras_tuner_vs_nas.py [--space cnn10] [--data mnist5k] [--budget 50] [--epochs 2]
        [--final-epochs 10] [--seeds 3] [--methods kt-random,kt-bayesian,random,evolution,reinforce]
        [--workers 2] [--bayesian-initial-points N] [--out-dir benchmarks/results] [--no-results-md] [--resume]
    python benchmarks/keras_tuner_vs_nas.py --report-only    # the RESULTS.md section from the saved JSON

For each seed, every method searches the same split (`nas.data.load_data(data, seed=seed)`), one
method at a time:
- `kt-random`, `kt-bayesian`: `keras_tuner.RandomSearch` / `BayesianOptimization`, run by Keras
  Tuner, each search in a fresh process of its own (as each nas search is), on the nas space
  converted by `search_spaces.interop.to_hyperparameters`.
  The hypermodel builds and compiles each child as nas does (`nas.builder.build_model`,
  `nas.trainer.make_optimizer`, the space's batch size). KT trains one child at a time; TensorFlow
  gets the threads nas gives its workers in total (`--workers` x 1 CPU), as `nas.trainer.configure_threads`
  sets them for a trial of that many CPUs. Each child is seeded as nas seeds it (the seed + the
  trial's number), so the same architecture in the same trial slot trains to the same accuracy.
  BayesianOptimization draws its first 3-per-decision trials (cnn10: 255) at random exactly as
  RandomSearch does from the same seed, so below that budget it repeats kt-random's children
  (`--bayesian-initial-points` lets its Gaussian process work sooner; each proposal then costs
  seconds to minutes of CPU in its process, which count in its wall time).
- `random`, `evolution`, `reinforce`: `nas search` in a subprocess with `--workers` children at once.
  Its wall time starts once Ray is up (config.json's `started`), so Ray's start-up is not counted
  but its workers' is.

It measures each method's best validation accuracy (a child's best epoch; the same as nas's reward
for --epochs up to 5) against wall-clock seconds since its search started (KT: `search()`'s start;
nas: config.json's `started`, trials' `finished`, both to the second), at its end and at equal wall
time (the shortest method's total for that seed; the JSON also holds 25/50/75/100 % of it), then
retrains each method's winner in this process with `nas.trainer.train_final` (train + validation,
`--final-epochs`, the seed) and tests it. Writes OUT_DIR/keras_tuner_vs_nas.json after each search (a
killed run loses only the search in progress; `--resume` with the same settings goes on from there,
and may raise `--seeds`), and the "Against Keras Tuner" section of benchmarks/RESULTS.md at the end.

Time on 2 cores: a seed takes 70-85 minutes with cnn10 on digits, 34-52 of them KT's
BayesianOptimization. Measured: Keras Tuner's RandomSearch took 649 s for 50 cnn10 children of 2
epochs on digits (13 s a child, one at a time; nas trains two at once). On mnist5k a cnn10 child's
epoch took 11 s on its own (overhead_scaling.py), so the defaults take several hours.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, nas_search, read_summary, read_trials, table, write_section  # noqa: E402

from nas.quiet import import_tensorflow  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
KT_METHODS = ("kt-random", "kt-bayesian")
NAS_METHODS = ("random", "evolution", "reinforce")
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)  # fractions of the shortest method's wall time, per seed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cnn10")
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per child")
    parser.add_argument("--final-epochs", type=int, default=10, help="epochs of each winner's retraining")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(KT_METHODS + NAS_METHODS))
    parser.add_argument("--workers", type=int, default=2, help="nas's concurrent children; KT's TensorFlow threads")
    parser.add_argument(
        "--bayesian-initial-points",
        type=int,
        default=None,
        help="random trials before KT's Gaussian process [default: KT's, 3 per decision]",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-results-md", action="store_true", help="do not write benchmarks/RESULTS.md")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the seeds a killed run of the same settings finished (OUT_DIR's JSON)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite the RESULTS.md section from OUT_DIR's finished JSON, measuring nothing",
    )
    args = parser.parse_args()
    args.methods = args.methods.split(",")
    unknown = [m for m in args.methods if m not in KT_METHODS + NAS_METHODS]
    if unknown:
        parser.error(f"--methods: got {unknown[0]!r}, expected names from {', '.join(KT_METHODS + NAS_METHODS)}")
    return args


# -- Keras Tuner, run by Keras Tuner ---------------------------------------------------------------


def keras_tuner_classes():
    """KT's tuners with a clock: the seconds since `search()` began at which each trial ended, and a
    seed per child (the search's seed + the trial's number, as nas seeds its children)."""
    import keras_tuner as kt

    class Clocked:
        def on_search_begin(self):
            self.started, self.ended = time.perf_counter(), {}
            super().on_search_begin()

        def on_trial_begin(self, trial):
            self.hypermodel.trial_number = int(trial.trial_id) + 1
            super().on_trial_begin(trial)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            self.ended[trial.trial_id] = time.perf_counter() - self.started

    class RandomSearch(Clocked, kt.RandomSearch):
        pass

    class BayesianOptimization(Clocked, kt.BayesianOptimization):
        pass

    return {"kt-random": RandomSearch, "kt-bayesian": BayesianOptimization}


def space_hypermodel(space, data, epochs: int, seed: int):
    """A KT hypermodel for a nas space: each trial's values -> the architecture -> the child nas would
    build, compiled as nas compiles it, fitted with the architecture's batch size."""
    import keras
    import keras_tuner as kt

    from nas.builder import build_model
    from nas.trainer import make_optimizer
    from search_spaces.interop import from_hyperparameters

    class SpaceHyperModel(kt.HyperModel):
        trial_number = 0  # set by the tuner before each trial

        def spec(self, hp) -> dict[str, Any]:
            return space.resolve(from_hyperparameters(space, hp.values))

        def build(self, hp):
            spec = self.spec(hp)
            keras.utils.set_random_seed(seed + self.trial_number)
            model = build_model(spec, data.input_shape, data.num_classes)
            steps = math.ceil(len(data.y_train) / spec["training"]["batch_size"]) * epochs
            model.compile(
                optimizer=make_optimizer(spec["training"], steps),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            return model

        def fit(self, hp, model, *args, **kwargs):
            return model.fit(*args, batch_size=self.spec(hp)["training"]["batch_size"], **kwargs)

    return SpaceHyperModel()


def run_keras_tuner(method: str, space, data, args, seed: int, tmp: Path) -> dict[str, Any]:
    """One KT search; its trials as (seconds since the search began, validation accuracy) and its winner."""
    import keras
    import keras_tuner as kt

    from search_spaces.interop import from_hyperparameters, to_hyperparameters

    extra = {"num_initial_points": args.bayesian_initial_points} if method == "kt-bayesian" else {}
    # KT's oracle takes a seed of 0 as "pick one at random".
    tuner = keras_tuner_classes()[method](
        hypermodel=space_hypermodel(space, data, args.epochs, seed),
        objective="val_accuracy",
        max_trials=args.budget,
        seed=seed + 1,
        hyperparameters=to_hyperparameters(space),
        tune_new_entries=False,
        directory=str(tmp),
        project_name=f"{method}-{seed}",
        overwrite=True,
        **extra,
    )
    tuner.search(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.epochs,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )
    wall = time.perf_counter() - tuner.started
    trials = sorted(
        (
            {
                "seconds": tuner.ended[t.trial_id],
                "val_accuracy": _finite(t.score) if t.status == kt.engine.trial.TrialStatus.COMPLETED else None,
            }
            for t in tuner.oracle.trials.values()
            if t.trial_id in tuner.ended
        ),
        key=lambda t: t["seconds"],
    )
    best = tuner.oracle.get_best_trials(1)
    winner = from_hyperparameters(space, best[0].hyperparameters.values).to_json() if best else None
    return {"wall_seconds": wall, "trials": trials, "winner": winner}


def keras_tuner_in_fresh_process(method: str, args, seed: int, tmp: Path) -> dict[str, Any]:
    """run_keras_tuner in a process of its own, started for it. In one long-lived process Keras Tuner
    slowed down search after search (measured on cnn10, digits): kt-bayesian's first 10 trials, the
    very children kt-random trained first, took 167 and 169 s after kt-random had run in the same
    process, against kt-random's 104 and 117 s; kt-random took 1,218 s after a whole seed, against
    649 and 669 s as the first search of a process (its memory had grown to 6.8 GB)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_keras_tuner_child, (method, vars(args), seed, tmp))


def _keras_tuner_child(method: str, args: dict, seed: int, tmp: Path) -> dict[str, Any]:
    import_tensorflow()
    from nas.data import load_data
    from nas.trainer import configure_threads
    from search_spaces import load_space

    args = argparse.Namespace(**args)
    configure_threads(args.workers)  # before TensorFlow's first op, as in the main process
    return run_keras_tuner(method, load_space(args.space), load_data(args.data, seed=seed), args, seed, tmp)


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# -- nas, run by `nas search` ----------------------------------------------------------------------


def run_nas(controller: str, args, seed: int, runs: Path) -> dict[str, Any]:
    """One `nas search`; its trials as (seconds since the search started, validation accuracy) and its winner."""
    run, seconds = nas_search(
        runs,
        f"{controller}-{seed}",
        "--space",
        args.space,
        "--data",
        args.data,
        "--controller",
        controller,
        "--budget",
        str(args.budget),
        "--epochs",
        str(args.epochs),
        "--final-epochs",
        "1",
        "--seed",
        str(seed),
        "--workers",
        str(args.workers),
    )
    summary = read_summary(run)
    # config.json's `started` is local time, each trial's `finished` UTC; both to the second.
    started = datetime.fromisoformat(json.loads((run / "config.json").read_text())["started"]).astimezone()
    records = read_trials(run)
    trials = sorted(
        (
            {
                "seconds": (datetime.fromisoformat(r["finished"]) - started).total_seconds(),
                "val_accuracy": r["metrics"]["val_accuracy"] if r["status"] == "completed" else None,
            }
            for r in records
        ),
        key=lambda t: t["seconds"],
    )
    return {
        "wall_seconds": summary["search_wall_seconds"],
        "trials": trials,
        "winner": summary["best"] and summary["best"]["arch"],
        "process_seconds": seconds,
    }  # with Ray's start-up and nas's own 1-epoch retraining


# -- curves, final training, comparison ------------------------------------------------------------


def best_at(trials: list[dict], seconds: float, wall: float) -> float | None:
    """The best validation accuracy among the trials finished by `seconds` (a trial's time is capped at
    the method's wall time: nas's are read to the second and may pass it by one)."""
    done = [t["val_accuracy"] for t in trials if min(t["seconds"], wall) <= seconds and t["val_accuracy"] is not None]
    return max(done, default=None)


def curve(trials: list[dict]) -> list[list[float]]:
    """[seconds, best validation accuracy so far] at each trial that improved it."""
    points, best = [], None
    for t in trials:
        if t["val_accuracy"] is not None and (best is None or t["val_accuracy"] > best):
            best = t["val_accuracy"]
            points.append([round(t["seconds"], 1), best])
    return points


def final_test(space, data, winner: dict | None, final_epochs: int, seed: int) -> dict[str, Any] | None:
    """The winner retrained on train + validation and tested, the same for every method."""
    from nas.trainer import train_final

    if winner is None:
        return None
    _, metrics = train_final(
        space.resolve(space.from_json(winner)),
        data.final_arrays(),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        epochs=final_epochs,
        seed=seed,
    )
    return metrics


def compare(runs: dict[str, dict]) -> dict[str, Any]:
    """Each method's best validation accuracy at its end, at the shortest method's wall time, and at
    the checkpoints (fractions of that time)."""
    equal = min(r["wall_seconds"] for r in runs.values())
    for r in runs.values():
        r["best_val_accuracy"] = best_at(r["trials"], r["wall_seconds"], r["wall_seconds"])
        r["at_equal_time"] = best_at(r["trials"], equal, r["wall_seconds"])
        r["checkpoints"] = {f"{f:.0%}": best_at(r["trials"], f * equal, r["wall_seconds"]) for f in CHECKPOINTS}
        r["curve"] = curve(r["trials"])
    return {"equal_seconds": equal, "methods": runs}


def run_seed(args, space, seed: int, tmp: Path, runs: dict[str, dict], keep) -> dict[str, Any]:
    """Every method's search on this seed's split, after the ones in `runs` (a killed run's, kept);
    `keep(runs)` is called after each search, so a kill loses only the search in progress."""
    from nas.data import load_data

    data = load_data(args.data, seed=seed)
    for method in args.methods:
        if method in runs:
            print(f"seed {seed} {method}: kept from the last run", flush=True)
            continue
        if method in KT_METHODS:
            run = keras_tuner_in_fresh_process(method, args, seed, tmp / "kt")
        else:
            run = run_nas(method, args, seed, tmp / "runs")
        final = final_test(space, data, run["winner"], args.final_epochs, seed)
        run["test_accuracy"] = final and final["test_accuracy"]
        run["final_fit_seconds"] = final and final["fit_seconds"]
        runs[method] = run
        keep(runs)
        print(
            f"seed {seed} {method}: {run['wall_seconds']:.0f} s, {len(run['trials'])} trials, "
            f"best val {_fmt(best_at(run['trials'], math.inf, math.inf))}, "
            f"winner's test {_fmt(run['test_accuracy'])}",
            flush=True,
        )
    return {"seed": seed, **compare({m: runs[m] for m in args.methods})}


# -- report ----------------------------------------------------------------------------------------


def _mean(values) -> float | None:
    """The mean over seeds, or None where a seed has none (no child finished by then, or none trained)."""
    values = list(values)
    return None if None in values else statistics.mean(values)


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summarise(args, seeds: list[dict]) -> dict[str, dict]:
    return {
        m: {
            key: _mean(s["methods"][m][key] for s in seeds)
            for key in ("best_val_accuracy", "at_equal_time", "test_accuracy", "wall_seconds")
        }
        for m in args.methods
    }


def target_line(means: dict[str, dict]) -> str:
    """Whether nas reinforce or evolution beats both KT tuners on mean best val accuracy at equal wall time."""
    ours = [m for m in ("reinforce", "evolution") if m in means]
    theirs = [m for m in KT_METHODS if m in means]
    if not ours or not theirs:
        return "Target not evaluated: it needs reinforce or evolution and the Keras Tuner tuners in --methods."
    bar = max(means[m]["at_equal_time"] or 0.0 for m in theirs)
    winners = [m for m in ours if (means[m]["at_equal_time"] or 0.0) > bar]
    verdict = f"**met** by {' and '.join(winners)}" if winners else "**not met**"
    return (
        f"Target (nas reinforce or evolution beats both Keras Tuner tuners on mean best validation accuracy at "
        f"equal wall time): {verdict} (best Keras Tuner: {bar:.4f})."
    )


def report(args, space, seeds: list[dict], means: dict[str, dict], threads: str, val_images: int) -> str:
    figures = table(
        [
            "method",
            "mean best val accuracy at the end",
            "at equal wall time",
            "winner's test accuracy",
            "mean wall time (s)",
        ],
        [
            [
                m,
                _fmt(v["best_val_accuracy"]),
                _fmt(v["at_equal_time"]),
                _fmt(v["test_accuracy"]),
                _fmt(v["wall_seconds"], 0),
            ]
            for m, v in means.items()
        ],
    )
    per_seed = table(
        ["method", *(f"seed {s['seed']} (at {s['equal_seconds']:.0f} s)" for s in seeds)],
        [[m, *(_fmt(s["methods"][m]["at_equal_time"]) for s in seeds)] for m in means],
    )
    # KT's default: 3 random trials per decision, drawn as RandomSearch draws them from the same seed.
    initial = args.bayesian_initial_points or max(3 * len(space.decisions), 3)
    bayesian = f"BayesianOptimization's random initial trials: {initial}" + (
        " (at least the budget: it trains the same children as kt-random)" if initial >= args.budget else ""
    )
    return (
        f"{args.space} on {args.data}, budget {args.budget}, {args.epochs} epochs per child, winners retrained "
        f"for {args.final_epochs} epochs, {args.seeds} seed(s); nas with {args.workers} workers of 1 CPU, Keras "
        f"Tuner one child at a time with {threads}; {bayesian}. Equal wall time: each seed's shortest search; "
        "- where a seed had no child finished by then.\n\n"
        + figures
        + "\n\n"
        + target_line(means)
        + f"\n\nBest validation accuracy at each seed's equal wall time. The validation split has {val_images} "
        f"images, so one image is {1 / val_images:.4f} of accuracy:\n\n" + per_seed
    )


def saved_progress(out: Path, settings: dict) -> tuple[list[dict], dict[str, dict]]:
    """What a killed run of the same settings finished (--resume): its whole seeds, and the searches
    of the seed it was in."""
    if not out.exists():
        return [], {}
    saved = json.loads(out.read_text())
    different = [k for k in settings if k not in ("seeds", "threads") and saved["settings"].get(k) != settings[k]]
    if different:
        raise SystemExit(f"--resume: {out} was run with other settings ({', '.join(different)}); expected the same")
    seeds, current = saved["seeds"][: settings["seeds"]], saved.get("current") or {}
    runs = current.get("methods", {}) if current.get("seed") == len(seeds) else {}
    print(f"Resuming after {len(seeds)} finished seed(s) and {len(runs)} search(es) of the next in {out}", flush=True)
    return seeds, runs


def save(
    out: Path,
    settings: dict,
    seeds: list[dict],
    current: dict | None = None,
    means: dict | None = None,
    measured: dict | None = None,
) -> None:
    """The results so far (the finished seeds, and the searches of the `current` one), written whole
    and then renamed over the last ones; a finished run adds its `means` and what `measured` it."""
    partial = out.with_suffix(".json.partial")
    partial.write_text(
        json.dumps(
            {"settings": settings, "means": means, "seeds": seeds, "current": current, "measured": measured}, indent=1
        )
    )
    partial.replace(out)


def validation_images(data: str) -> int:
    from nas.data import load_data

    return len(load_data(data, seed=0).y_val)  # the same size for every seed


def report_only(args) -> None:
    """Renders the section from the JSON of a finished run, naming the command that measured it."""
    from search_spaces import load_space

    out = args.out_dir / "keras_tuner_vs_nas.json"
    saved = json.loads(out.read_text()) if out.exists() else {}
    if not saved.get("means") or not saved.get("measured"):
        raise SystemExit(f"--report-only: {out} holds no finished run: run the benchmark first")
    args = argparse.Namespace(**{**vars(args), **saved["settings"]})
    body = f"Measured by `{saved['measured']['command']}`, finished {saved['measured']['finished']}.\n\n" + report(
        args, load_space(args.space), saved["seeds"], saved["means"], args.threads, validation_images(args.data)
    )
    write_section("Against Keras Tuner", command_line(), body)
    print(body)


def main() -> None:
    args = parse_args()
    import_tensorflow()
    if args.report_only:
        return report_only(args)
    import tensorflow as tf

    from nas.trainer import configure_threads
    from search_spaces import load_space

    configure_threads(args.workers)  # before TensorFlow's first op: as nas sets a trial of --workers CPUs
    threads = (
        f"{tf.config.threading.get_intra_op_parallelism_threads()} intra-op and "
        f"{tf.config.threading.get_inter_op_parallelism_threads()} inter-op TensorFlow threads"
    )
    print(
        f"Keras Tuner (a process for each search) and the final trainings run with {threads} "
        f"(nas: {args.workers} workers of 1 thread each)",
        flush=True,
    )
    space = load_space(args.space)
    out = args.out_dir / "keras_tuner_vs_nas.json"
    settings = {
        **{k: v for k, v in vars(args).items() if k not in ("resume", "no_results_md", "report_only")},
        "out_dir": str(args.out_dir),
        "threads": threads,
        "keras_tuner_process": "fresh for each search",
    }
    seeds, runs = saved_progress(out, settings) if args.resume else ([], {})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(len(seeds), args.seeds):

            def keep(runs, seed=seed):  # a seed's searches take over an hour: each is kept as soon as done
                save(out, settings, seeds, {"seed": seed, "methods": runs})

            seeds.append(run_seed(args, space, seed, Path(tmp), runs, keep))
            runs = {}
            save(out, settings, seeds)
    means = summarise(args, seeds)
    save(
        out,
        settings,
        seeds,
        means=means,
        measured={"command": command_line(), "finished": f"{datetime.now():%Y-%m-%d %H:%M}"},
    )
    body = report(args, space, seeds, means, threads, validation_images(args.data))
    if not args.no_results_md:
        write_section("Against Keras Tuner", command_line(), body)
    print(body, f"\n{out}", sep="\n")


if __name__ == "__main__":
    main()
