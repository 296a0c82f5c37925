"""The course's ladder on mnist5k: its hand-written models (linear, DNN, DNN with dropout, CNN) and the
hand-written BN CNN of hand_network.py beside the winners of short nas searches of the linear, dnn,
cnn10, cnn10_aug and resnet spaces.

    python benchmarks/course_ladder.py [--budget 12] [--seeds 1] [--course-epochs 15]
                                       [--epochs N] [--final-epochs N] [--spaces cnn10,resnet]

Every model sees the same split (load_data("mnist5k", seed=S): 3,200 train, 800 validation, 1,000
test), is trained on train + validation and tested once: the course's models for --course-epochs,
the hand-written BN CNN with its own recipe, each space's winner as the space declares (its search
and final epochs, unless --epochs or --final-epochs say otherwise). The searches run through the
`nas search` command (random controller: a short search's winner should not depend on a
controller's learning). Each nas row counts the seeds on which its winner is at or above the
hand-written network (issue 20). Writes benchmarks/results/course_ladder.json and the "Course
ladder" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hand_network import train_hand  # noqa: E402
from results_md import finish, nas_search, read_summary, table  # noqa: E402

SPACES = ["linear", "dnn", "cnn10", "cnn10_aug", "resnet"]
HAND = "hand-written BN CNN (benchmarks/hand_network.py)"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "course_ladder.json"


def course_models():
    """The course's MNIST models (its `linear`, `dnn`, `dnn_dropout` and `cnn` functions), in Keras 3."""
    import keras
    from keras import layers

    def start():
        inputs = keras.Input((28, 28, 1))
        return inputs, layers.Rescaling(1 / 255)(inputs)

    def linear():
        inputs, x = start()
        return keras.Model(inputs, layers.Dense(10, activation="softmax")(layers.Flatten()(x)))

    def dnn(dropout=0.0):
        inputs, x = start()
        x = layers.Flatten()(x)
        for units in (300, 100, 30):
            x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
        return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))

    def cnn():
        inputs, x = start()
        x = layers.Conv2D(10, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(20, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(300, activation="relu")(x)
        x = layers.Dropout(0.25)(x)
        return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))

    return {"course linear": linear, "course dnn": dnn, "course dnn + dropout": lambda: dnn(0.25), "course cnn": cnn}


def train_course_model(build, data, epochs: int, seed: int) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    arrays = data.final_arrays()
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(arrays["x_train"], arrays["y_train"], batch_size=32, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(arrays["x_test"], arrays["y_test"], batch_size=256, verbose=0)[1]
    return {"test_accuracy": float(accuracy), "params": int(model.count_params()), "seconds": seconds}


def search(space: str, args, seed: int, runs: Path) -> dict:
    overrides = [f"--{flag}={value}" for flag, value in (("epochs", args.epochs), ("final-epochs", args.final_epochs))]
    run, seconds = nas_search(
        runs,
        f"{space}-{seed}",
        "--space",
        space,
        "--data",
        "mnist5k",
        "--controller",
        "random",
        "--budget",
        str(args.budget),
        "--seed",
        str(seed),
        *[flag for flag in overrides if not flag.endswith("=None")],
    )
    summary = read_summary(run)
    return {
        "test_accuracy": summary["test_accuracy"],
        "params": summary["final"]["params"],
        "seconds": seconds,
        "best_val_accuracy": summary["best"]["val_accuracy"],
        "winner": summary["best"]["values"],
    }


def against_hand(name: str, runs: list[dict], hand: list[dict]) -> str:
    """On how many seeds a search's winner is at or above the hand-written network (issue 20's goal)."""
    if not name.startswith("nas "):
        return ""
    return f"{sum(r['test_accuracy'] >= h['test_accuracy'] for r, h in zip(runs, hand))} of {len(runs)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=12, help="children per search")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per child (default: each space's own)")
    parser.add_argument("--final-epochs", type=int, default=None, help="epochs of a winner (default: its space's)")
    parser.add_argument("--course-epochs", type=int, default=15, help="epochs of the course's models")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--spaces", default=",".join(SPACES))
    parser.add_argument("--runs-dir", help="keep the searches' run directories here (default: a temporary one)")
    parser.add_argument(
        "--report-only", action="store_true", help="write the RESULTS.md section from results/course_ladder.json"
    )
    args = parser.parse_args()
    if args.report_only:
        return finish(OUT, json.loads(OUT.read_text()), "Course ladder", report, measured=False)

    from nas.data import load_data

    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs_dir or tmp)
        for seed in range(args.seeds):
            data = load_data("mnist5k", seed=seed)
            for name, build in course_models().items():
                rows.setdefault(name, []).append(train_course_model(build, data, args.course_epochs, seed))
                print(name, seed, rows[name][-1], flush=True)
            rows.setdefault(HAND, []).append(train_hand(data, seed))  # its own recipe and epochs
            print(HAND, seed, rows[HAND][-1], flush=True)
            for space in args.spaces.split(","):
                rows.setdefault(f"nas {space}", []).append(search(space, args, seed, runs))
                print(space, seed, rows[f"nas {space}"][-1], flush=True)

    finish(OUT, {"settings": vars(args), "rows": rows}, "Course ladder", report, measured=True)


def report(result: dict) -> str:
    """The "Course ladder" section of RESULTS.md from the saved figures (and its "notes", if any)."""
    settings, rows = result["settings"], result["rows"]
    seeds = len(rows[HAND])
    figures = table(
        [
            "model",
            "test accuracy per seed",
            "mean",
            "seeds at or above the hand network",
            "parameters",
            "seconds (search + final training)",
        ],
        [
            [
                name,
                " / ".join(f"{r['test_accuracy']:.4f}" for r in runs),
                f"{statistics.mean(r['test_accuracy'] for r in runs):.4f}",
                against_hand(name, runs, rows[HAND]),
                f"{int(statistics.median(r['params'] for r in runs)):,}",
                f"{statistics.mean(r['seconds'] for r in runs):.0f}",
            ]
            for name, runs in rows.items()
        ],
    )
    own = "the space's own"
    epochs = f"epochs per child: {settings['epochs'] or own}, final epochs: {settings['final_epochs'] or own}"
    return (
        f"mnist5k (3,200 train, 800 validation, 1,000 test), {seeds} seed(s). Searches: random controller, "
        f"budget {settings['budget']}, {epochs}; the course's models {settings['course_epochs']} epochs, the "
        "hand-written BN CNN its own recipe (25 epochs); every final model trained on train + validation and "
        "tested once.\n\n" + figures + (f"\n\n{result['notes']}" if result.get("notes") else "")
    )


if __name__ == "__main__":
    main()
