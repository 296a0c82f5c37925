"""The course's ladder on mnist5k: its hand-written models (linear, DNN, DNN with dropout, CNN) and the
hand-written BN CNN of hand_network.py beside the winners of short nas searches of the linear, dnn,
cnn10, cnn10_aug and resnet spaces.

    python benchmarks/course_ladder.py [--budget 12] [--epochs 2] [--final-epochs 15] [--seeds 1]

Every model sees the same split (load_data("mnist5k", seed=S): 3,200 train, 800 validation, 1,000
test), is trained for --final-epochs on train + validation and tested once. The searches run
through the `nas search` command (random controller: a short search's winner should not depend on a
controller's learning). Writes benchmarks/results/course_ladder.json and the "Course ladder"
section of benchmarks/RESULTS.md. About 15-20 minutes with the defaults on 2 cores.
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
from results_md import command_line, nas_search, read_summary, table, write_section  # noqa: E402

SPACES = ["linear", "dnn", "cnn10", "cnn10_aug", "resnet"]
HAND = "hand-written BN CNN (benchmarks/hand_network.py)"
RESULTS = Path(__file__).resolve().parent / "results"


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
        "--epochs",
        str(args.epochs),
        "--final-epochs",
        str(args.final_epochs),
        "--seed",
        str(seed),
    )
    summary = read_summary(run)
    return {
        "test_accuracy": summary["test_accuracy"],
        "params": summary["final"]["params"],
        "seconds": seconds,
        "best_val_accuracy": summary["best"]["val_accuracy"],
        "winner": summary["best"]["values"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=12, help="children per search")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per child")
    parser.add_argument("--final-epochs", type=int, default=15, help="epochs of every final model")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--spaces", default=",".join(SPACES))
    args = parser.parse_args()

    from nas.data import load_data

    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            data = load_data("mnist5k", seed=seed)
            for name, build in course_models().items():
                rows.setdefault(name, []).append(train_course_model(build, data, args.final_epochs, seed))
                print(name, seed, rows[name][-1], flush=True)
            rows.setdefault(HAND, []).append(train_hand(data, seed))  # its own recipe and epochs
            print(HAND, seed, rows[HAND][-1], flush=True)
            for space in args.spaces.split(","):
                rows.setdefault(f"nas {space}", []).append(search(space, args, seed, Path(tmp)))
                print(space, seed, rows[f"nas {space}"][-1], flush=True)

    result = {"settings": vars(args), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "course_ladder.json").write_text(json.dumps(result, indent=1))
    figures = table(
        ["model", "test accuracy (mean of seeds)", "parameters", "seconds (search + final training)"],
        [
            [
                name,
                f"{statistics.mean(r['test_accuracy'] for r in runs):.4f}",
                f"{int(statistics.median(r['params'] for r in runs)):,}",
                f"{statistics.mean(r['seconds'] for r in runs):.0f}",
            ]
            for name, runs in rows.items()
        ],
    )
    body = (
        f"mnist5k (3,200 train, 800 validation, 1,000 test), {args.seeds} seed(s). Searches: random controller, "
        f"budget {args.budget}, {args.epochs} epochs per child; every final model {args.final_epochs} epochs on "
        "train + validation, tested once, but the hand-written BN CNN, trained with its own recipe "
        "(25 epochs).\n\n" + figures
    )
    write_section("Course ladder", command_line(), body)
    print(figures)


if __name__ == "__main__":
    main()
