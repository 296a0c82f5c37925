"""The winner's final training, recipe against recipe (issue 20): the default searches' winners
(benchmarks/results/hand_network.json) retrained on train + validation of mnist5k splits and tested
once, under the space's recipe and under variants of it, side by side.

    python benchmarks/final_recipe.py --set tune   [--recipes base,wd,long] [--jobs 2]
    python benchmarks/final_recipe.py --set report [--recipes base,CHOSEN] [--jobs 2]
    python benchmarks/final_recipe.py --report-only

Two sets, so that a recipe is chosen on some splits and reported on others: `tune` retrains the
winner of cnn10's seed-2 search on the splits of seeds 3, 4 and 5, which no reported search or hand
network used; `report` retrains every space's winner on its own seed's split (0-2), where the hand
network's test accuracy is known. Every training keeps an exponential moving average of its weights
(momentum 0.99, training.ema) beside the raw ones, which it does not change: each row gives the test
accuracy and loss of both, so "+ ema" costs no training of its own.

The searches themselves do not read the final recipe, so a winner retrained under a recipe is what
the same default search would return with that recipe as its final training. Trainings run in
`--jobs` processes of one TensorFlow thread each (their seconds are one thread's). Writes
benchmarks/results/final_recipe.json after every training (a killed run goes on where it stopped)
and the "Final recipe" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import finish, run_in_processes, table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "final_recipe.json"
HAND = RESULTS / "hand_network.json"
EMA_MOMENTUM = 0.99
# Changes to the space's training settings; "epochs" is the final training's epochs (default: the
# space's), "augment" raises the augmentations named to at least these values.
RECIPES = {
    "base": {},
    "wd": {"weight_decay": 0.25},
    "long": {"epochs": 60},
    "long_wd": {"epochs": 60, "weight_decay": 0.25},
    # Stronger augmentation in the final training only (each at least this; a searched one may be more).
    "aug": {"augment": {"rotation": 0.1, "zoom": 0.1}},
}
SETS = {
    # (space whose winner is retrained, the seed of the search that found it, the split's seed)
    "tune": [("cnn10", 2, 3), ("cnn10", 2, 4), ("cnn10", 2, 5)],
    "report": [(space, seed, seed) for space in ("cnn10", "cnn10_aug", "resnet") for seed in (0, 1, 2)],
}


def describe(recipe: str) -> str:
    """The recipe's changes in words: "base" for the space's own."""
    changes = RECIPES[recipe]
    words = [f"{changes['epochs']} epochs"] if "epochs" in changes else []
    words += [f"weight decay {changes['weight_decay']}"] if "weight_decay" in changes else []
    words += [f"{name} {value}" for name, value in changes.get("augment", {}).items()]
    return f"{recipe}: {', '.join(words)}" if words else f"{recipe}: the space's (30 epochs)"


@functools.cache
def hand_results() -> dict:
    """hand_network.py's saved results, read once."""
    return json.loads(HAND.read_text())


def hand_entry(space: str, seed: int) -> dict:
    entries = hand_results()["seeds"][str(seed)]
    return entries["nas" if space == "cnn10" else f"nas {space}"]


def job_key(space: str, search_seed: int, split_seed: int, recipe: str) -> str:
    return f"{space}/search{search_seed}/split{split_seed}/{recipe}"


def train(space_name: str, search_seed: int, split_seed: int, recipe: str) -> dict:
    """Retrains the winner of `space_name`'s search with seed `search_seed` on the split of
    `split_seed` under `recipe`; the raw and the averaged weights' test accuracy and loss."""
    import keras

    from nas.data import load_data
    from nas.trainer import configure_threads, train_final
    from search_spaces import load_space
    from search_spaces.interop import from_values

    configure_threads(1)
    space = load_space(space_name)
    spec = space.resolve(from_values(space, hand_entry(space_name, search_seed)["winner"]))
    changes = dict(RECIPES[recipe])
    epochs = changes.pop("epochs", spec["training"]["final_epochs"])
    for name, value in changes.pop("augment", {}).items():
        spec["augment"][name] = max(spec["augment"][name], value)
    spec["training"].update(changes, ema=EMA_MOMENTUM)
    data = load_data("mnist5k", seed=split_seed)
    arrays = data.final_arrays()
    raw: dict[str, float] = {}

    class RawWeights(keras.callbacks.Callback):
        """Tests the raw weights after the last epoch, before fit swaps in their average."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                loss, accuracy = self.model.evaluate(arrays["x_test"], arrays["y_test"], batch_size=256, verbose=0)
                raw.update(test_accuracy=float(accuracy), test_loss=float(loss))

    _, metrics = train_final(
        spec,
        arrays,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        epochs=epochs,
        seed=split_seed,
        callbacks=[RawWeights()],
    )
    return {
        "raw": raw,
        "ema": {"test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"]},
        "params": metrics["params"],
        "epochs": epochs,
        "fit_seconds": metrics["fit_seconds"],
    }


def run(result: dict, jobs: list[tuple[str, int, int, str]], workers: int) -> None:
    todo = [job for job in jobs if job_key(*job) not in result["runs"]]
    todo.sort(key=lambda job: -RECIPES[job[3]].get("epochs", 0))  # the longest first, for an even finish
    print(f"{len(todo)} trainings to run, {len(jobs) - len(todo)} done before", flush=True)
    run_in_processes(result, OUT, {job_key(*job): (train, job) for job in todo}, workers)


def rows_of(result: dict, set_name: str, recipe: str, weights: str) -> list[tuple[tuple, dict]]:
    return [
        (job, result["runs"][job_key(*job, recipe)][weights])
        for job in SETS[set_name]
        if job_key(*job, recipe) in result["runs"]
    ]


def report(result: dict) -> str:
    recipes = [r for r in RECIPES if any(k.endswith(f"/{r}") for k in result["runs"])]
    parts = []
    for set_name in SETS:
        header = ["recipe", "weights", "trainings", "mean test accuracy", "mean test loss", "per split"]
        rows = []
        for recipe in recipes:
            for weights in ("raw", "ema"):
                measured = rows_of(result, set_name, recipe, weights)
                if not measured:
                    continue
                rows.append(
                    [
                        describe(recipe),
                        weights,
                        str(len(measured)),
                        f"{statistics.mean(m['test_accuracy'] for _, m in measured):.4f}",
                        f"{statistics.mean(m['test_loss'] for _, m in measured):.4f}",
                        ", ".join(f"{m['test_accuracy']:.4f}" for _, m in measured),
                    ]
                )
        if rows:
            what = (
                "**Tuning splits** (cnn10's seed-2 winner on the splits of seeds 3, 4, 5)"
                if set_name == "tune"
                else "**Report splits** (each space's winner on its own seed's split)"
            )
            parts.append(f"{what}:\n\n{table(header, rows)}")
    if any(job_key(*job, r) in result["runs"] for job in SETS["report"] for r in recipes):
        parts.append(against_hand(result, recipes))
    return "\n\n".join([*parts, result.get("note", "")])


def against_hand(result: dict, recipes: list[str]) -> str:
    retrained = [f"{r} {w}" for r in recipes for w in ("raw", "ema")]
    header = ["space", "seed", "hand network", "the search's own", *retrained]
    rows = []
    for space, search_seed, split_seed in SETS["report"]:
        hand = hand_results()["seeds"][str(split_seed)]["hand"]["test_accuracy"]
        cells = [f"{hand_entry(space, search_seed)['test_accuracy']:.4f}"]
        for recipe in recipes:
            entry = result["runs"].get(job_key(space, search_seed, split_seed, recipe))
            for weights in ("raw", "ema"):
                accuracy = entry[weights]["test_accuracy"] if entry else None
                cells.append("" if accuracy is None else f"{accuracy:.4f}" + (" *" if accuracy >= hand - 1e-6 else ""))
        rows.append([space, str(split_seed), f"{hand:.4f}", *cells])
    return (
        "Against the hand network, per seed (* at or above it); the search's own final training "
        "(hand_network.py's run, two threads under Ray) beside the retrainings here:\n\n" + table(header, rows)
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="tune")
    parser.add_argument("--recipes", default="base,wd,long", help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, one TensorFlow thread each")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", default=None, help="a paragraph saved below the tables")
    args = parser.parse_args(argv)
    result = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    if args.note is not None:
        result["note"] = args.note
    if not args.report_only:
        recipes = args.recipes.split(",")
        unknown = [r for r in recipes if r not in RECIPES]
        if unknown:
            parser.error(f"--recipes: unknown {', '.join(unknown)}; expected some of {', '.join(RECIPES)}")
        run(result, [(*job, recipe) for job in SETS[args.set] for recipe in recipes], args.jobs)
    finish(OUT, result, "Final recipe", report, measured=not args.report_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
