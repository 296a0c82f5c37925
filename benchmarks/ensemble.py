"""An ensemble of the search's best children against its single winner (issue 20): the default
searches of hand_network.py, their winner's final model beside the next-best children retrained the
same way, and the average of their predicted probabilities, tested once on the search's own split.

    python benchmarks/ensemble.py [--members 3] [--jobs 2]
    python benchmarks/ensemble.py --report-only

For each default search hand_network.py ran (benchmarks/results/hand_network.json names its run
directory), the children are ranked as the search ranks its winner (validation reward, then the
earlier trial); the first is the winner, whose model is the run's own best/model.keras; the next
`--members - 1` are retrained on train + validation under the space's final recipe (train_final,
one TensorFlow thread each, `--jobs` at once), as the search would retrain them. The ensemble of the
first k averages their softmax outputs. k is not tuned on these splits: it is what the cores of a
2-core machine can train at the same time as the winner, which is what the search would pay for it.

Writes benchmarks/results/ensemble.json after every training (a killed run goes on where it stopped;
each member's test probabilities are kept in runs/ensemble_probabilities/, git-ignored) and the
"Ensemble of the best children" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import finish, returned_ensemble, run_in_processes, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "ensemble.json"
HAND = RESULTS / "hand_network.json"
PROBABILITIES = ROOT / "runs" / "ensemble_probabilities"
SPACES = {"cnn10": "nas", "cnn10_aug": "nas cnn10_aug", "resnet": "nas resnet"}


def searches() -> list[tuple[str, int, Path]]:
    """(space, seed, run directory) of each default search hand_network.py recorded that returned its
    winner alone (one that returned an ensemble is measured as one there, and its best/ is not the
    winner's model this script reads)."""
    hand = json.loads(HAND.read_text())
    found = []
    for seed, entries in sorted(hand["seeds"].items()):
        for space, key in SPACES.items():
            run = Path(entries[key]["run"]) if key in entries else None
            if run and returned_ensemble(entries[key]):
                print(f"{run}: returned an ensemble; {space} seed {seed} is kept as measured before", flush=True)
            elif run and (run / "trials.jsonl").is_file():
                found.append((space, int(seed), run))
            elif run:
                print(f"{run}: no longer on this machine; {space} seed {seed} is left out", flush=True)
    return found


def ranked(run: Path) -> list[dict]:
    """The run's completed children, best first, as the search chooses its winner."""
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines() if line.strip()]
    completed = [r for r in records if r["status"] == "completed" and r.get("reward") is not None]
    return sorted(completed, key=lambda r: (-r["reward"], r["trial"]))


def probabilities_file(space: str, seed: int, trial: int) -> Path:
    return PROBABILITIES / f"{space}-seed{seed}-trial{trial}.npy"


def winner_probabilities(space: str, seed: int, run: Path, trial: int) -> dict:
    """The run's own final model's test probabilities (kept) and accuracy."""
    import keras
    import numpy as np

    from nas.data import load_data
    from nas.trainer import configure_threads

    configure_threads(1)
    arrays = load_data("mnist5k", seed=seed).final_arrays()
    model = keras.saving.load_model(run / "best" / "model.keras", safe_mode=True)
    probabilities = model.predict(arrays["x_test"], batch_size=256, verbose=0)
    np.save(probabilities_file(space, seed, trial), probabilities)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == arrays["y_test"]))
    return {"test_accuracy": accuracy, "fit_seconds": None, "source": "the search's own final model"}


def retrained_probabilities(space: str, seed: int, values: dict):
    """A child of `space` (a built-in space's name or a space file; its decisions' `values`) retrained
    on train + validation of the seed's mnist5k split as the search retrains an ensemble's members (one
    TensorFlow thread, the space's final recipe): its test probabilities and train_final's metrics."""
    from nas.data import load_data
    from nas.trainer import configure_threads, train_final
    from search_spaces import load_space
    from search_spaces.interop import from_values

    configure_threads(1)
    loaded = load_space(space)
    spec = loaded.resolve(from_values(loaded, values))
    data = load_data("mnist5k", seed=seed)
    arrays = data.final_arrays()
    model, metrics = train_final(
        spec,
        arrays,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        epochs=spec["training"]["final_epochs"],
        seed=seed,
    )
    return model.predict(arrays["x_test"], batch_size=256, verbose=0), metrics


def averaged_accuracy(probabilities: list, y_test) -> float:
    """The test accuracy of the average of several models' probabilities."""
    import numpy as np

    return float(np.mean(np.mean(probabilities, axis=0).argmax(axis=1) == y_test))


def retrain(space_name: str, seed: int, values: dict, trial: int) -> dict:
    """Retrains a child on train + validation as the search retrains its winner; keeps its test
    probabilities."""
    import numpy as np

    probabilities, metrics = retrained_probabilities(space_name, seed, values)
    np.save(probabilities_file(space_name, seed, trial), probabilities)
    return {
        "test_accuracy": metrics["test_accuracy"],
        "params": metrics["params"],
        "fit_seconds": metrics["fit_seconds"],
        "source": "retrained here",
    }


def key(space: str, seed: int, trial: int) -> str:
    return f"{space}/seed{seed}/trial{trial}"


def run(result: dict, members: int, jobs: int) -> None:
    PROBABILITIES.mkdir(parents=True, exist_ok=True)
    todo = []
    for space, seed, run_dir in searches():
        best = ranked(run_dir)[:members]
        summary = json.loads((run_dir / "summary.json").read_text())
        if best[0]["trial"] != summary["best"]["trial"]:
            chosen = summary["best"]["trial"]
            raise SystemExit(f"{run_dir}: ranked first trial {best[0]['trial']}, the search chose {chosen}")
        result["searches"][f"{space}/seed{seed}"] = {
            "run": str(run_dir),
            "members": [{"trial": r["trial"], "reward": r["reward"]} for r in best],
        }
        for rank, record in enumerate(best):
            done = key(space, seed, record["trial"]) in result["runs"]
            if not done or not probabilities_file(space, seed, record["trial"]).exists():
                todo.append((rank, space, seed, run_dir, record))
    todo.sort(key=lambda job: job[0])  # the winners (read), then every search's second, then third
    print(f"{len(todo)} members to train or read", flush=True)
    run_in_processes(
        result,
        OUT,
        {
            key(space, seed, record["trial"]): (
                (winner_probabilities, (space, seed, run_dir, record["trial"]))
                if rank == 0
                else (retrain, (space, seed, record["values"], record["trial"]))
            )
            for rank, space, seed, run_dir, record in todo
        },
        jobs,
    )
    score(result)


def score(result: dict) -> None:
    """The test accuracy of each search's ensembles of its first k members."""
    import numpy as np

    from nas.data import load_data

    for name, entry in result["searches"].items():
        space, seed = name.split("/seed")
        y_test = load_data("mnist5k", seed=int(seed)).final_arrays()["y_test"]
        stacked = [np.load(probabilities_file(space, int(seed), m["trial"])) for m in entry["members"]]
        entry["ensembles"] = {str(k): averaged_accuracy(stacked[:k], y_test) for k in range(1, len(stacked) + 1)}
    OUT.write_text(json.dumps(result, indent=1))


def report(result: dict) -> str:
    hand = json.loads(HAND.read_text())["seeds"]
    sizes = sorted({k for e in result["searches"].values() for k in e.get("ensembles", {})}, key=int)
    header = ["space", "seed", "hand network", *(f"best {k}" if k != "1" else "winner" for k in sizes), "members' own"]
    rows, at_or_above = [], {k: 0 for k in sizes}
    for name, entry in result["searches"].items():
        if "ensembles" not in entry:
            continue
        space, seed = name.split("/seed")
        hand_accuracy = hand[seed]["hand"]["test_accuracy"]
        cells = []
        for k in sizes:
            accuracy = entry["ensembles"].get(k)
            above = accuracy is not None and accuracy >= hand_accuracy - 1e-6
            at_or_above[k] += above
            cells.append("" if accuracy is None else f"{accuracy:.4f}" + (" *" if above else ""))
        own = ", ".join(
            f"{result['runs'][key(space, int(seed), m['trial'])]['test_accuracy']:.4f}" for m in entry["members"]
        )
        rows.append([space, seed, f"{hand_accuracy:.4f}", *cells, own])
    means = [
        f"{statistics.mean(e['ensembles'][k] for e in result['searches'].values() if k in e.get('ensembles', {})):.4f}"
        for k in sizes
    ]
    rows.append(["mean", "", "", *means, ""])
    rows.append(["at or above the hand network", "", "", *(f"{at_or_above[k]} of {len(rows) - 1}" for k in sizes), ""])
    return (
        "Each default search's winner (its own final model) and the average of its best k children's "
        "probabilities, the others retrained on train + validation under the space's final recipe; "
        "test accuracy on the search's split (* at or above the hand network):\n\n"
        + table(header, rows)
        + ("\n\n" + result["note"] if result.get("note") else "")
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=3, help="the best children per search, the winner included")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, one TensorFlow thread each")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", default=None, help="a paragraph saved below the table")
    args = parser.parse_args(argv)
    result = json.loads(OUT.read_text()) if OUT.exists() else {"searches": {}, "runs": {}}
    if args.note is not None:
        result["note"] = args.note
    if not args.report_only:
        run(result, args.members, args.jobs)
    finish(OUT, result, "Ensemble of the best children", report, measured=not args.report_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
