"""Weight sharing against stand-alone search on cnn10 (issue 21), side by side on one machine.

    python benchmarks/weight_sharing.py [--seeds 3] [--runs-dir DIR] [--standalone-runs DIR] [--report-only]

Per seed S (mnist5k, nas's split for S), every search as a user runs it (only the flags named):
  (a) `nas search --space cnn10 --strategy enas --seed S --ensemble 1`       ENAS: REINFORCE over the supernet
  (b) `nas search --space cnn10 --strategy enas --controller random --seed S --ensemble 1`   random paths (SPOS)
  (c) `nas search --space cnn10 --controller random --seed S`, stopped with Ctrl-C once it has searched
      as long as (a) took in all; the best child it had finished by then is retrained as a winner is
      (train + validation, the space's final epochs) and tested: stand-alone random search given (a)'s time
  (e) one random cnn10 architecture (drawn with seed S), retrained the same way
and (d), the default stand-alone search (`nas search --space cnn10 --budget 200`), read from the runs of
benchmarks/hand_network.py in --standalone-runs (cnn10-seedS), or from the figures it saved where its
run directory is gone. Every arm retrains and tests its winner alone (`--ensemble 1` for (a) and (b),
whose space returns an ensemble of two by default; for (d), hand_network.py's searches from before
ensembles), so the arms compare search strategies, not final models; the ensemble's gain is
measured in benchmarks/hand_network.py and benchmarks/ensemble.py.

Rank fidelity: (1) the completed children of (d) (up to 4 epochs each, from scratch) scored with the
shared weights of (a)'s supernet for the same seed, the first with both run directories (batch norm
recalibrated, whole validation split): Kendall tau and Spearman rho between the two validation
accuracies; (2) bench_cnn's table: its 84
architectures of learning rate 0.01 (the table's other decision, which a supernet cannot share)
scored with a supernet trained on digits with random paths, against their mean validation accuracy
over the table's 3 seeds; (3) (fidelity-random) 40 cnn10 architectures drawn uniformly, trained
stand-alone as a search's children are (4 epochs at half width) but every one all 4 epochs (`nas search
--controller random --budget 40 --scheduler fifo`), scored with the supernets of (a) and of (b) for seed 0.
(1) asks whether the supernet ranks the children near a search's best (ASHA let only the better ones
finish: a narrow band of accuracies); (3) whether it ranks the space, as the candidates it scores span it.

Learning curve (curve): cnn10's supernet trained 20 epochs on random paths, and 6 epochs on one path
alone, with its loss and the children's shared-weight accuracy per epoch.

Ablation (ablation): which of cnn10's decisions keep its supernet from learning. Variants of cnn10
with every layer decision fixed (3x3 kernels, 32 filters, the previous layer as input, batch norm
before the activation: one path) but those named, each trained 2 epochs on random paths.

Child-epoch equivalents: the epochs of stand-alone children trained, plus for a supernet its epochs
(one pass over the training split each, one child's path per batch). Runs already finished in
--runs-dir are read, not searched again, and an arm the JSON already holds for a seed (of today's
cnn10) is kept even where its run directory is gone: delete its entry to measure it again. Writes
benchmarks/results/weight_sharing.json and the "Weight sharing" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import (  # noqa: E402
    PROJECT,
    finish,
    finished_run,
    measured_today,
    nas_search,
    read_summary,
    read_trials,
    returned_ensemble,
    space_fingerprint,
    table,
    wall_seconds,
)

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "weight_sharing.json"


def hand_network(seed: str) -> tuple[float, str] | None:
    """The hand-written network's test accuracy on `seed`'s split as benchmarks/hand_network.py
    measured it, or issue 20's figure for seed 0 (0.9910); with where it comes from."""
    saved = RESULTS / "hand_network.json"
    if saved.is_file():
        hand = json.loads(saved.read_text())["seeds"].get(seed, {}).get("hand")
        if hand:
            return hand["test_accuracy"], "benchmarks/hand_network.py"
    return (0.9910, "issue 20") if seed == "0" else None


def finished(run: Path) -> bool:
    """Whether `run` holds a finished search of today's cnn10 (another cnn10's ends the benchmark)."""
    return finished_run(run, "cnn10") is not None


# What a measurement of an earlier cnn10 keeps: moved under "before" when today's cnn10 is measured.
MEASURED = ("seeds", "fidelity", "curve", "notes")


def set_aside_other_cnn10(result: dict) -> dict:
    """`result` ready for measurements of today's cnn10: those of another cnn10 (by fingerprint; none
    recorded: the first, before the fingerprint was kept) move to result["before"], which the report
    summarises in a line."""
    today = space_fingerprint("cnn10")
    if result.get("space_fingerprint") == today:
        return result
    if result.get("seeds"):
        result["before"] = {key: result.pop(key) for key in (*MEASURED, "command") if key in result}
    result.setdefault("seeds", {})
    result["space_fingerprint"] = today
    return result


def supernet_defaults() -> dict:
    """The weight_sharing settings a space file leaves at their defaults, as measured."""
    import dataclasses

    from nas.enas import EnasSettings

    settings = dataclasses.asdict(EnasSettings())
    settings.pop("controller")
    return settings


def set_aside_other_supernet(result: dict) -> dict:
    """`result` ready for measurements with today's supernet defaults: the arms and figures that
    depend on the supernet ((a), (b), rank fidelity, the learning curve) measured with other defaults
    move to result["before_supernet"], which the report summarises in a line. The ablation stays:
    it says why the supernet learned slowly at the defaults it names."""
    today = supernet_defaults()
    if result.get("supernet_defaults") == today:
        return result
    moved = {
        "seeds": {s: {k: e.pop(k) for k in ("a", "b") if k in e} for s, e in result.get("seeds", {}).items()},
        **{key: result.pop(key) for key in ("fidelity", "curve") if key in result},
        "supernet_defaults": result.get("supernet_defaults"),
    }
    if any(moved["seeds"].values()) or "fidelity" in moved:
        result["before_supernet"] = moved
    result["supernet_defaults"] = today
    return result


def before_supernet_line(before: dict) -> str:
    settings, today = before.get("supernet_defaults"), supernet_defaults()
    differences = (  # from today's defaults
        ", ".join(f"{k} {settings[k]}" if k in settings else f"no {k}" for k in today if settings.get(k) != today[k])
        if settings
        else "the space's batch and learning rate"
    )
    line = before_line(before, f"Before, with the supernet's earlier defaults ({differences})")
    curve = before.get("curve", {}).get("random paths")
    if curve:
        line += (
            f" Its supernet on random paths, seed 0: mean shared-weight accuracy "
            f"{curve[min(9, len(curve) - 1)]['reward_mean']:.2f} after {min(10, len(curve))} epochs, "
            f"{curve[-1]['reward_mean']:.2f} after {len(curve)}."
        )
    return line


EARLIER_CNN10 = "Before, on an earlier cnn10 (issue 20 changed the space: skips, widening, half-width children)"


def before_line(before: dict, heading: str = EARLIER_CNN10) -> str:
    """One line of earlier measurements (by default, of an earlier cnn10)."""
    parts = []
    for key, _ in ARMS:
        done = [e[key] for e in before.get("seeds", {}).values() if e.get(key)]
        if done:
            parts.append(
                f"({key}) {statistics.mean(d['test_accuracy'] for d in done):.4f} in "
                f"{statistics.mean(d['wall_seconds'] for d in done) / 60:.1f} min"
            )
    taus = [f"{name}: tau {f['kendall_tau']:.2f}" for name, f in before.get("fidelity", {}).items()]
    return (
        f"{heading}, seed(s) {', '.join(sorted(before.get('seeds', {}), key=int))}: "
        + "; ".join(parts)
        + (f"; rank fidelity {'; '.join(taus)}" if taus else "")
        + "."
    )


def child_epochs(run: Path) -> int:
    return sum(t["metrics"].get("epochs", 0) for t in read_trials(run) if t["status"] != "failed")


def enas_arm(runs: Path, seed: int, controller: str) -> dict:
    run = runs / f"enas-{controller}-seed{seed}"
    if not finished(run):
        flags = ("--strategy", "enas", "--controller", controller, "--seed", str(seed), "--ensemble", "1")
        run, _ = nas_search(runs, run.name, "--space", "cnn10", *flags)
    summary = read_summary(run)
    settings = json.loads((run / "config.json").read_text())["weight_sharing"]
    return {
        "run": str(run),
        "test_accuracy": summary["test_accuracy"],
        "wall_seconds": wall_seconds(run),
        # a supernet epoch that also trains each path's widest variant passes over the images twice
        "child_epochs": child_epochs(run) + settings["supernet_epochs"] * (2 if settings.get("train_widest") else 1),
        "kendall_tau_finalists": summary["supernet"]["kendall_tau"],
        "finalists": summary["supernet"]["finalists"],
        "final_fit_seconds": summary["final"]["fit_seconds"],
    }


def retrain(arch_json: dict, seed: int) -> dict:
    """An architecture retrained as a search's winner is (train + validation, the space's final epochs), tested once."""
    from nas.data import load_data
    from nas.trainer import configure_threads, train_final
    from search_spaces import load_space

    configure_threads(os.cpu_count() or 1)
    space = load_space("cnn10")
    data = load_data("mnist5k", seed=seed)
    start = time.perf_counter()
    _, metrics = train_final(
        space.resolve(space.from_json(arch_json)),
        data.final_arrays(),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        epochs=space.fixed["training"]["final_epochs"],
        seed=seed,
    )
    return {**metrics, "seconds": time.perf_counter() - start}


def random_standalone_arm(runs: Path, seed: int, seconds: float, final_seconds: float) -> dict:
    """(c): a stand-alone random search interrupted once it has searched `seconds` minus the time the
    winner's retraining will take, then its best finished child retrained."""
    run = runs / f"random-seed{seed}"
    if not (run / "trials.jsonl").is_file():
        command = [
            sys.executable,
            "-m",
            "nas.cli",
            "search",
            "--space",
            "cnn10",
            "--controller",
            "random",
            "--seed",
            str(seed),
            "--no-dashboard",
            "--runs-dir",
            str(runs),
            "--name",
            run.name,
        ]
        process = subprocess.Popen(
            command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        while not (run / "config.json").is_file() and process.poll() is None:
            time.sleep(0.5)
        started = time.monotonic()  # config.json is written once Ray is up, as (a)'s wall is counted
        while process.poll() is None and time.monotonic() - started < seconds - final_seconds:
            time.sleep(0.5)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: what finished is kept
            process.communicate(timeout=600)
    trials = [t for t in read_trials(run) if t["status"] == "completed"]
    best = max(trials, key=lambda t: (t["reward"], -t["trial"]))
    result = retrain(best["arch"], seed)
    return {
        "run": str(run),
        "children": len(read_trials(run)),
        "test_accuracy": result["test_accuracy"],
        "wall_seconds": seconds,
        "winner_trial": best["trial"],
        "child_epochs": child_epochs(run) + result["epochs"],
        "final_fit_seconds": result["fit_seconds"],
    }


def random_architecture_arm(seed: int) -> dict:
    from controllers import make_controller
    from search_spaces import load_space

    arch = make_controller("random", load_space("cnn10"), seed=seed).ask()
    result = retrain(arch.to_json(), seed)
    return {
        "test_accuracy": result["test_accuracy"],
        "wall_seconds": result["seconds"],
        "child_epochs": result["epochs"],
    }


def standalone_arm(standalone_runs: Path, seed: int) -> dict | None:
    """(d) from its run directory, or, where that is gone (a scratch disk lost), from the figures
    benchmarks/hand_network.py saved for the same search of today's cnn10; None where neither is
    there, or where the search returned an ensemble (the other arms test their winner alone)."""
    from nas.engine import STANDALONE_BUDGET
    from search_spaces import load_space

    run = standalone_runs / f"cnn10-seed{seed}"
    if finished(run):
        summary = read_summary(run)
        if returned_ensemble(summary["final"]):
            return None
        return {
            "run": str(run),
            "test_accuracy": summary["test_accuracy"],
            "wall_seconds": wall_seconds(run),
            "child_epochs": child_epochs(run) + summary["final"]["epochs"],
            "budget": summary["budget"],
        }
    saved = RESULTS / "hand_network.json"
    nas = json.loads(saved.read_text())["seeds"].get(str(seed), {}).get("nas") if saved.is_file() else None
    if not measured_today(nas, "cnn10", STANDALONE_BUDGET) or returned_ensemble(nas):
        return None
    final_epochs = load_space("cnn10").fixed["training"]["final_epochs"]
    return {
        "run": f"{nas['run']} (gone: figures from benchmarks/results/hand_network.json)",
        "test_accuracy": nas["test_accuracy"],
        "wall_seconds": nas["wall_seconds"],
        # its mean epochs a child times the children it trained (a failed child's epochs are few)
        "child_epochs": round(nas["mean_epochs_per_child"] * nas.get("trials", nas["budget"])) + final_epochs,
        "budget": nas["budget"],
    }


def shared_scores(run: Path, archs: list, data) -> list[float]:
    """The validation accuracy of each architecture with the shared weights of `run`'s supernet."""
    from nas.enas import CHECKPOINT, SupernetPhase, make_enas_controller, read_settings
    from search_spaces import parse_space

    config = json.loads((run / "config.json").read_text())
    space = parse_space((run / "space.yaml").read_text(), source=str(run / "space.yaml"))
    settings = read_settings(space, {"finalists": config["budget"]})
    phase = SupernetPhase(
        space,
        data.search_arrays(),
        data.input_shape,
        data.num_classes,
        settings,
        make_enas_controller(config["controller"], space, settings, seed=config["seed"]),
        seed=config["seed"],
    )
    phase.load_bytes((run / CHECKPOINT).read_bytes())
    return [phase.score(space.from_json(a)) for a in archs]


def rank_fidelity(shared: list[float], alone: list[float]) -> dict:
    """Kendall tau and Spearman rho between shared-weight and stand-alone accuracies."""
    from scipy.stats import kendalltau, spearmanr

    return {
        "architectures": len(alone),
        "kendall_tau": float(kendalltau(shared, alone).statistic),
        "spearman_rho": float(spearmanr(shared, alone).statistic),
    }


def fidelity_cnn10(enas_run: Path, standalone_run: Path, seed: int) -> dict:
    from nas.data import load_data

    children = [t for t in read_trials(standalone_run) if t["status"] == "completed"]
    shared = shared_scores(enas_run, [t["arch"] for t in children], load_data("mnist5k", seed=seed))
    return rank_fidelity(shared, [t["metrics"]["val_accuracy"] for t in children])


def fidelity_random(runs: Path, seed: int, controller: str, count: int = 40) -> dict:
    """Rank fidelity over `count` cnn10 architectures drawn uniformly: a random search's children, each
    trained its 4 search epochs (no ASHA), scored with the shared weights of the supernet of an enas
    search with `controller` for the same seed. Unlike (d)'s completed children, which REINFORCE drew
    near its best and ASHA let finish (a narrow band of accuracies), these span the space, as a
    search's candidates do."""
    from nas.data import load_data

    supernet = enas_arm(runs, seed, controller)  # the arm's run, searched unless it is there
    children = runs / f"random{count}-fifo-seed{seed}"
    if not finished(children):
        flags = ("--controller", "random", "--budget", str(count), "--scheduler", "fifo", "--seed", str(seed))
        children, _ = nas_search(
            runs, children.name, "--space", "cnn10", *flags, "--final-epochs", "1", "--ensemble", "1"
        )
    trials = [t for t in read_trials(children) if t["status"] == "completed"]
    shared = shared_scores(Path(supernet["run"]), [t["arch"] for t in trials], load_data("mnist5k", seed=seed))
    alone = [t["metrics"]["val_accuracy"] for t in trials]
    return {
        **rank_fidelity(shared, alone),
        "stand_alone": [min(alone), max(alone)],
        "shared": [min(shared), max(shared)],
        "supernet_run": {"test_accuracy": supernet["test_accuracy"], "wall_seconds": supernet["wall_seconds"]},
    }


def fidelity_bench_cnn(seed: int, epochs: int = 10) -> dict:
    """bench_cnn's architectures of learning rate 0.01, with shared weights trained on random paths."""
    from nas.bench import load_table
    from nas.data import load_data
    from nas.enas import SupernetPhase, make_enas_controller, read_settings
    from search_spaces import parse_space

    table = load_table("bench_cnn")
    text = table.space.text.replace("learning_rate: [0.001, 0.003, 0.01]", "learning_rate: 0.01")
    space = parse_space(text + f"weight_sharing: {{supernet_epochs: {epochs}}}\n", source="bench_cnn, lr 0.01")
    position = [d.name for d in table.space.decisions].index("training.learning_rate")
    lr_index = table.space.decisions[position].choices.index(0.01)
    rows = [(i, a) for i, a in enumerate(table.archs) if a.choices[position] == lr_index]
    data = load_data(table.meta["data"], seed=0)
    settings = read_settings(space)
    phase = SupernetPhase(
        space,
        data.search_arrays(),
        data.input_shape,
        data.num_classes,
        settings,
        make_enas_controller("random", space, settings, seed=seed),
        seed=seed,
    )
    start = time.perf_counter()
    for _ in range(epochs):
        phase.train_epoch()
    shared = [phase.score(space.architecture([c for k, c in enumerate(a.choices) if k != position])) for _, a in rows]
    alone = [float(table.val[i].mean()) for i, _ in rows]
    return {**rank_fidelity(shared, alone), "epochs": epochs, "seconds": time.perf_counter() - start}


def random_path_epochs(space, data, epochs: int, seed: int, path=None) -> list[dict]:
    """The records of `epochs` epochs of `space`'s supernet on `data` with uniform random paths, or
    always the architecture `path` (one path trained alone in the supernet)."""
    from nas.enas import SupernetPhase, make_enas_controller, read_settings

    # one path alone: without its widest variant, which would share its weights with it
    settings = read_settings(
        space, {"supernet_epochs": epochs, **({"train_widest": False} if path is not None else {})}
    )
    controller = make_enas_controller("random", space, settings, seed=seed)
    if path is not None:
        controller.ask = lambda: path
    phase = SupernetPhase(
        space, data.search_arrays(), data.input_shape, data.num_classes, settings, controller, seed=seed
    )
    return [phase.train_epoch() for _ in range(epochs)]


def learning_curve(seed: int, epochs: int = 20, fixed_epochs: int = 6) -> dict:
    """cnn10's supernet on mnist5k: per epoch, its training loss and the mean shared-weight accuracy of
    sampled children on validation batches, with random paths; and the same for one path trained alone
    in it (how fast a child learns when it does not share)."""
    from controllers import make_controller
    from nas.data import load_data
    from nas.trainer import configure_threads
    from search_spaces import load_space

    configure_threads(os.cpu_count() or 1)
    space = load_space("cnn10")
    data = load_data("mnist5k", seed=seed)
    return {
        "random paths": random_path_epochs(space, data, epochs, seed),
        "one path": random_path_epochs(
            space, data, fixed_epochs, seed, path=make_controller("random", space, seed=seed).ask()
        ),
    }


# cnn10's layer decisions, fixed to one value each in the ablation unless the variant frees them
ABLATION_FIXED = {
    "kernel": {"kernel_height": 3, "kernel_width": 3},
    "filters": {"filters": 32},
    "inputs": {"inputs": "previous"},
    "batch_norm": {"batch_norm": "before_activation"},
}
ABLATION_VARIANTS = ["", "batch_norm", "inputs", "filters", "kernel", "kernel,filters,inputs,batch_norm"]


def supernet_ablation(seed: int = 0, epochs: int = 2) -> dict:
    """Per variant of cnn10 (the decisions it frees, comma-separated; "" frees none but a one-value
    kernel height, so that the space has a decision), the supernet's loss and shared-weight accuracy
    per epoch on random paths."""
    import tempfile

    import yaml

    from nas.data import load_data
    from nas.trainer import configure_threads
    from search_spaces import load_space

    configure_threads(os.cpu_count() or 1)
    data = load_data("mnist5k", seed=seed)
    base = yaml.safe_load((PROJECT / "search_spaces" / "cnn10.yaml").read_text())
    curves = {}
    with tempfile.TemporaryDirectory() as folder:
        for variant in ABLATION_VARIANTS:
            spec = yaml.safe_load(yaml.safe_dump(base))
            free = set(filter(None, variant.split(",")))
            for group, values in ABLATION_FIXED.items():
                if group not in free:
                    spec["layer"].update(values)
            if not free:
                spec["layer"]["kernel_height"] = [3]
            path = Path(folder) / f"cnn10_{variant.replace(',', '_') or 'one_path'}.yaml"
            path.write_text(yaml.safe_dump(spec))
            curves[variant or "none"] = random_path_epochs(load_space(path), data, epochs, seed)
            print("ablation", variant or "none", curves[variant or "none"], flush=True)
    return curves


ARMS = [
    ("a", "enas, REINFORCE"),
    ("b", "enas, random paths"),
    ("c", "stand-alone random search, (a)'s wall time"),
    ("d", "stand-alone REINFORCE, 200 children (the default)"),
    ("e", "one random architecture, retrained"),
]


def ablation_settings(result: dict) -> str:
    settings = result.get("ablation_settings")
    if not settings:  # measured before the supernet had a batch and learning rate of its own
        return "batch 64 and learning rate 0.002, cnn10's"
    return f"batch {settings['batch_size']} and learning rate {settings['learning_rate']}"


def report(result: dict) -> str:
    seeds = sorted(result["seeds"], key=int)
    rows = []
    for key, label in ARMS:
        done = [result["seeds"][s][key] for s in seeds if result["seeds"][s].get(key)]
        if not done:
            rows.append([f"({key}) {label}", "not run", "", "", "", ""])
            continue
        accuracy = [d["test_accuracy"] for d in done]
        spread = f" ± {statistics.stdev(accuracy):.4f}" if len(accuracy) > 1 else ""
        rows.append(
            [
                f"({key}) {label}",
                f"{len(done)}",
                f"{statistics.mean(accuracy):.4f}{spread}",
                ", ".join(f"{a:.4f}" for a in accuracy),
                f"{statistics.mean(d['wall_seconds'] for d in done) / 60:.1f}",
                f"{statistics.mean(d['child_epochs'] for d in done):.0f}",
            ]
        )
    text = (
        "mnist5k, nas's split per seed. Wall: the run's own time from config.json's start to its summary "
        "(the final training included; Ray's start and the data's loading, about 15 s, not). (c) is "
        "interrupted once its search has run (a)'s wall less the retraining; its best child is then "
        "retrained as a winner is.\n\n"
    )
    text += table(
        ["search", "seeds", "test accuracy (mean ± sd)", "per seed", "wall (min)", "child-epoch equivalents"], rows
    )
    lines = []
    for s in seeds:
        entry = result["seeds"][s]
        if entry.get("a") and entry.get("d"):
            a, d = entry["a"], entry["d"]
            lines.append(
                f"seed {s}: (a) took {a['wall_seconds'] / d['wall_seconds']:.2f} of (d)'s wall (target: at "
                f"most 0.17) and tested {a['test_accuracy']:.4f} against (d)'s {d['test_accuracy']:.4f}"
            )
        hand = hand_network(s)
        if entry.get("a") and hand:
            lines.append(
                f"seed {s}: (a) {entry['a']['test_accuracy']:.4f} against the hand network's {hand[0]:.4f} ({hand[1]})"
            )
        for key in ("a", "b"):
            if entry.get(key) and entry[key].get("kendall_tau_finalists") is not None:
                tau, count = entry[key]["kendall_tau_finalists"], len(entry[key]["finalists"])
                lines.append(
                    f"seed {s}: ({key})'s finalists, shared-weight against stand-alone validation accuracy: "
                    f"Kendall tau {tau:.2f} over {count}"
                )
    fidelity = result.get("fidelity", {})
    for name, f in fidelity.items():
        lines.append(
            f"rank fidelity, {name}: Kendall tau **{f['kendall_tau']:.2f}**, Spearman rho "
            f"{f['spearman_rho']:.2f} over {f['architectures']} architectures (target: tau at least 0.3)"
        )
    for name, curve in result.get("curve", {}).items():
        lines.append(
            f"cnn10 supernet, {name}, seed 0, per epoch (loss / mean shared-weight accuracy of the sampled "
            "children on validation batches): "
            + ", ".join(f"{e['loss']:.2f} / {e['reward_mean']:.2f}" for e in curve)
            + f"; {statistics.mean(e['train_seconds'] + e['controller_seconds'] for e in curve[1:]):.1f} s "
            "an epoch after the first"
        )
    if lines:
        text += "\n\n" + "\n".join(f"- {line}" for line in lines)
    ablation = result.get("ablation")
    if ablation:
        rows = [
            [
                "none (one path)" if variant == "none" else variant.replace(",", ", "),
                " → ".join(f"{e['loss']:.2f}" for e in curve),
                " → ".join(f"{e['reward_mean']:.2f}" for e in curve),
            ]
            for variant, curve in ablation.items()
        ]
        text += (
            "\n\nAblation, seed 0: cnn10 with every layer decision fixed (3x3 kernels, 32 filters, the previous "
            "layer as input, batch norm before the activation) but those named, its supernet trained on random "
            f"paths ({ablation_settings(result)}), per epoch:\n\n"
            + table(["decisions left free", "training loss", "shared-weight accuracy of sampled children"], rows)
        )
    if result.get("notes"):
        text += "\n\n" + result["notes"]
    if result.get("before_supernet"):
        text += "\n\n" + before_supernet_line(result["before_supernet"])
    if result.get("before"):
        text += "\n\n" + before_line(result["before"])
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--arms",
        default="a,b,c,e,fidelity,fidelity-random,curve,ablation",
        help="which to run, of a, b, c, e, fidelity, fidelity-random, curve and ablation",
    )
    parser.add_argument("--runs-dir", default=str(RESULTS / "weight_sharing_runs"))
    parser.add_argument(
        "--standalone-runs",
        default=str(RESULTS / "hand_network_runs"),
        help="where benchmarks/hand_network.py left its cnn10-seedS runs: arm (d)",
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", help="conditions of the measurement, printed under the results")
    args = parser.parse_args()
    arms = set(args.arms.split(","))
    runs, standalone = Path(args.runs_dir), Path(args.standalone_runs)
    runs.mkdir(parents=True, exist_ok=True)
    result = json.loads(OUT.read_text()) if OUT.exists() else {"seeds": {}}
    if not args.report_only and arms - {"ablation"}:
        result = set_aside_other_supernet(set_aside_other_cnn10(result))
    if args.note:
        result["notes"] = args.note
    if not args.report_only:
        RESULTS.mkdir(exist_ok=True)
        for seed in range(args.seeds):
            entry = result["seeds"].setdefault(str(seed), {})
            entry["d"] = standalone_arm(standalone, seed) or entry.get("d")
            # An arm the JSON holds for today's cnn10 is kept, even where its run directory is gone;
            # each is saved as it ends, so that a killed benchmark keeps the arms it finished.
            if "a" in arms and not entry.get("a"):
                entry["a"] = enas_arm(runs, seed, "reinforce")
                OUT.write_text(json.dumps(result, indent=1))
            if "b" in arms and not entry.get("b"):
                entry["b"] = enas_arm(runs, seed, "random")
                OUT.write_text(json.dumps(result, indent=1))
            if "c" in arms and entry.get("a") and not entry.get("c"):
                entry["c"] = random_standalone_arm(
                    runs, seed, entry["a"]["wall_seconds"], entry["a"]["final_fit_seconds"]
                )
                OUT.write_text(json.dumps(result, indent=1))
            if "e" in arms and "e" not in entry:
                entry["e"] = random_architecture_arm(seed)
            print(seed, json.dumps(entry), flush=True)
            OUT.write_text(json.dumps(result, indent=1))
        if "curve" in arms:
            result["curve"] = learning_curve(0)
            OUT.write_text(json.dumps(result, indent=1))
        if "ablation" in arms:
            result["ablation"] = supernet_ablation(0)
            result["ablation_settings"] = supernet_defaults()
            OUT.write_text(json.dumps(result, indent=1))
        if "fidelity" in arms:
            fidelity = result.setdefault("fidelity", {})
            both = [  # the first seed whose (a) and (d) run directories are both here
                (int(seed), entry)
                for seed, entry in sorted(result["seeds"].items(), key=lambda item: int(item[0]))
                if entry.get("a") and entry.get("d") and finished(Path(entry["d"]["run"]))
            ]
            if both:
                seed, entry = both[0]
                fidelity[f"cnn10, (d)'s completed children, (a)'s supernet, seed {seed}"] = fidelity_cnn10(
                    Path(entry["a"]["run"]), Path(entry["d"]["run"]), seed
                )
            fidelity["bench_cnn, learning rate 0.01, random paths"] = fidelity_bench_cnn(0)
            OUT.write_text(json.dumps(result, indent=1))
        if "fidelity-random" in arms:
            fidelity = result.setdefault("fidelity", {})
            for key, controller in (("a", "reinforce"), ("b", "random")):
                name = f"cnn10, 40 random architectures (4 epochs each, no ASHA), ({key})'s supernet, seed 0"
                fidelity[name] = fidelity_random(runs, 0, controller)
                OUT.write_text(json.dumps(result, indent=1))
    finish(OUT, result, "Weight sharing", report, measured=not args.report_only)


if __name__ == "__main__":
    main()
