"""The default search against a hand-written network: `nas search --space cnn10 --budget 200` with
every default beside a keras-io style BN CNN trained by hand, on the same mnist5k split, seed for seed;
with --spaces, the same default search of the course ladder's cnn10_aug and resnet too (issue 20).

    python benchmarks/hand_network.py [--seeds 3] [--only 2,0] [--budget 200] [--spaces cnn10,cnn10_aug,resnet]
        [--runs-dir DIR] [--fidelity N [--fidelity-only]] [--report-only]

Per seed S (the split's seed and the search's --seed): the hand network is trained on train +
validation and tested once on the 1,000 held-out images; then the search runs as a user runs it
(only --space, --seed, --name and --runs-dir given, no dashboard), for each space in turn. A finished
run already in --runs-dir under the space's and seed's name (cnn10-seedS) is read instead of searched
again, if its space is today's: a killed benchmark goes on from the next search. A search the JSON
already holds, measured on today's space at the same budget, is kept even where its run directory is
gone (a lost scratch disk); delete its entry to measure it again. With --fidelity N, the top N
children of the first seed's cnn10 search are retrained as the winner is (train + validation, the
space's final epochs) and the Spearman rho between their search reward and their test accuracy is
reported.

Writes benchmarks/results/hand_network.json and the "Against a hand-written network" section of
RESULTS.md. About 40 minutes a search on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import (  # noqa: E402
    command_line,
    finish,
    finished_run,
    measured_today,
    nas_search,
    read_summary,
    read_trials,
    space_fingerprint,
    table,
    wall_seconds,
)

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "hand_network.json"
HAND_EPOCHS = 25
SPACES = ("cnn10", "cnn10_aug", "resnet")  # the spaces issue 20 asks to beat the hand network with


def key(space: str) -> str:
    """A seed's entry holds the hand network under "hand" and each space's search under this key
    ("nas" for cnn10, as before the other spaces were measured)."""
    return "nas" if space == "cnn10" else f"nas {space}"


# Earlier cnn10 spaces on the same splits and machine, kept as history rows: issue 20's table (commit
# 79974f8: 8-32 filters, no augmentation, fifo, batch 32, Adam 5e-3), then this benchmark's runs of
# 2026-12-04 (commit 456f05b: inputs any, reductions after layers 0 and 3, 16-48 filters, three
# batch-norm placements, the hand recipe, ASHA, children at full width).
FIELDS = ("label", "seed", "test_accuracy", "hand", "wall_min", "winner_trial", "best_val_accuracy", "params")


def history_rows(label: str, *rows: tuple, space: str = "cnn10", children: tuple[int, ...] = ()) -> list[dict]:
    """History rows of one search setting, each (seed, test accuracy, hand network's, wall minutes,
    the winner's trial, its search reward, its parameters); `children`: each row's, where a search
    trained fewer than 200."""
    return [
        {"space": space, "children": n, **dict(zip(FIELDS, (label, *row), strict=True))}
        for row, n in zip(rows, children or [200] * len(rows), strict=True)
    ]


HISTORY = [
    *history_rows("issue 20 (commit 79974f8)", (0, 0.9840, None, 68.8, 9, 0.9862, 91_000)),
    *history_rows("cnn10 of commit 456f05b", (0, 0.9890, 0.9890, 52.7, 147, 0.9787, 180_514)),
    *history_rows("cnn10 of commit 456f05b (suite beside it)", (1, 0.9870, 0.9920, 73.2, 139, 0.9862, 281_938)),
    # Today's cnn10 with every default, before REINFORCE's elite (6d49712): the searches of 2026-12-06
    # (commits 283456c and 52de3de; seed 2's on a machine slower that hour for a reason not found).
    *history_rows(
        "every default, before REINFORCE's elite",
        (0, 0.9920, 0.9890, 30.3, 107, 0.9850, 640_006),
        (1, 0.9920, 0.9920, 29.8, 19, 0.9825, 523_486),
        (2, 0.9880, 0.9890, 44.2, 183, 0.9812, 685_350),
    ),
    # The same cnn10 with REINFORCE's elite, its winner alone as the final model, before the space's
    # ensemble of the best two (4c09c89): the searches of 2026-12-06 (worktrees at 7348ea8 and 469c66b).
    *history_rows(
        "every default, the winner alone (before ensembles)",
        (0, 0.9920, 0.9890, 39.9, 106, 0.9850, 610_670),
        (1, 0.9890, 0.9920, 44.3, 138, 0.9875, 592_134),
        (2, 0.9890, 0.9890, 37.7, 41, 0.9812, 443_260),
    ),
    # resnet with every default, its winner alone, before its ensemble of the best two: the searches
    # of 2026-12-06 (a worktree at 01884ae; its 48 architectures ran out before the budget).
    *history_rows(
        "every default, the winner alone (before ensembles)",
        (0, 0.9930, 0.9890, 15.3, 15, 0.9812, 698_282),
        (1, 0.9920, 0.9920, 14.8, 16, 0.9800, 698_282),
        (2, 0.9870, 0.9890, 14.7, 17, 0.9712, 698_282),
        space="resnet",
        children=(43, 44, 39),
    ),
    # cnn10_aug with `augment: standard` (every augmentation a decision that may be off), its winner
    # alone, before the space's ensemble and before cnn10's augmentation became its least: the searches
    # of 2026-12-06/07 (worktrees at c43f21c and 82c16d0; seed 1 beside short test runs).
    *history_rows(
        "augment: standard, the winner alone (before ensembles)",
        (0, 0.9880, 0.9890, 48.0, 52, 0.9850, 565_616),
        (1, 0.9930, 0.9920, 60.7, 175, 0.9875, 655_266),
        (2, 0.9870, 0.9890, 50.0, 122, 0.9825, 543_298),
        space="cnn10_aug",
    ),
    # The same cnn10 with an ensemble of its best two, before REINFORCE's mutations of the best children
    # (0d635b2): the searches of 2026-12-07 (a worktree at 5644106; seed 0 beside short test runs).
    *history_rows(
        "every default, an ensemble of 2, before REINFORCE's mutations",
        (0, 0.9940, 0.9890, 46.0, "41 + 185", 0.9837, 962_744),
        (1, 0.9920, 0.9920, 48.1, "135 + 146", 0.9862, 1_801_584),
        (2, 0.9890, 0.9890, 41.3, "18 + 147", 0.9787, 936_460),
    ),
]


def hand_model(input_shape=(28, 28, 1), num_classes=10):
    """The hand network: 3 blocks of two 3x3 convolutions with batch normalisation (32, 64, 96
    filters), max pooling between blocks, global average pooling, dropout 0.3; random translation
    0.1 and rotation 0.05 while training. Takes raw pixels, as nas's models do."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="constant")(x)
    x = layers.RandomRotation(0.05, fill_mode="constant")(x)
    for block, filters in enumerate((32, 64, 96)):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        if block < 2:
            x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


def train_hand(data, seed: int, epochs: int = HAND_EPOCHS) -> dict:
    """Adam 2e-3 with cosine decay, batches of 64, on train + validation; tested once. `seed` seeds
    the initialisation, the augmentation and the batches' order (the split is `data`'s)."""
    import keras

    keras.utils.set_random_seed(seed)
    arrays = data.final_arrays()
    model = hand_model(data.input_shape, data.num_classes)
    steps = -(-len(arrays["y_train"]) // 64) * epochs
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(arrays["x_train"], arrays["y_train"], batch_size=64, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(arrays["x_test"], arrays["y_test"], batch_size=256, verbose=0)[1]
    return {"test_accuracy": float(accuracy), "params": int(model.count_params()), "seconds": seconds}


def search(space: str, seed: int, args) -> dict:
    run = Path(args.runs_dir) / f"{space}-seed{seed}"
    summary, process_seconds = finished_run(run, space), None
    if summary is None:
        run, process_seconds = nas_search(
            Path(args.runs_dir), run.name, "--space", space, "--budget", str(args.budget), "--seed", str(seed)
        )
        summary = read_summary(run)
    trained = [t for t in read_trials(run) if t["status"] != "failed"]
    config = json.loads((run / "config.json").read_text())
    return {
        "run": str(run),
        "space_fingerprint": config["space_fingerprint"],
        "controller_settings": config["controller_settings"],
        "test_accuracy": summary["test_accuracy"],
        "wall_seconds": wall_seconds(run),
        "last_session_wall_seconds": summary["wall_seconds"],
        "budget": summary["budget"],
        "trials": summary["trials_completed"] + summary["trials_stopped_early"] + summary["trials_failed"],
        "process_seconds": process_seconds,
        "search_wall_seconds": summary["search_wall_seconds"],
        "final_fit_seconds": summary["final"]["fit_seconds"],
        "winner_trial": summary["best"]["trial"],
        "best_val_accuracy": summary["best"]["val_accuracy"],
        "params": summary["final"]["params"],
        "trials_stopped_early": summary["trials_stopped_early"],
        "engine_overhead": summary["engine_overhead"],
        "mean_child_params": statistics.mean(t["metrics"]["params"] for t in trained),
        "mean_epochs_per_child": statistics.mean(t["metrics"]["epochs"] for t in trained),
        "fit_seconds_per_epoch": sum(t["metrics"]["fit_seconds"] for t in trained)
        / sum(t["metrics"]["epochs"] for t in trained),
        "winner": summary["best"]["values"],
        "members": [
            {"trial": m["trial"], "test_accuracy": m["test_accuracy"], "params": m["params"]}
            for m in summary["final"].get("members", [])
        ],
    }


def ensemble_size(space: str) -> int:
    """How many children today's built-in `space` returns averaged as its final model."""
    from search_spaces import load_space

    return load_space(space).fixed["training"]["ensemble"]


def current(entry: dict | None, space: str, budget: int) -> bool:
    """Whether a saved search measured today's `space`, controller and final model: the space's
    fingerprint leaves out the ensemble setting, so a search that returned its winner alone, saved
    before the space returned an ensemble, is measured again."""
    return measured_today(entry, space, budget) and len(entry.get("members") or [None]) == ensemble_size(space)


def fidelity(run: Path, top: int, known: dict | None = None, save=lambda partial: None) -> dict:
    """Retrains the `top` completed children with the highest reward as the winner is retrained;
    the Spearman rho between their reward and their test accuracy. `known` (an earlier result of
    this function for the same run) gives the children already retrained, by trial and architecture,
    which are not trained again; `save` gets the result so far after each child, so that a killed run loses none."""
    from scipy.stats import spearmanr

    from nas.data import load_data
    from nas.trainer import train_final
    from search_spaces import parse_space

    config = json.loads((run / "config.json").read_text())
    space = parse_space((run / "space.yaml").read_text(), source=str(run / "space.yaml"))
    data = load_data("mnist5k", seed=config["seed"])
    best = sorted(
        (t for t in read_trials(run) if t["status"] == "completed"), key=lambda t: (-t["reward"], t["trial"])
    )[:top]
    known = known if known and known.get("run") == str(run) else {}
    done = {(c["trial"], tuple(c.get("arch", ()))): c for c in known.get("children", [])}
    rows = []
    for t in best:
        key = (t["trial"], tuple(t["arch"]["choices"]))  # the same run folder may hold a newer search
        if key in done:
            rows.append(done[key])
            continue
        _, metrics = train_final(
            space.resolve(space.from_json(t["arch"])),
            data.final_arrays(),
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            epochs=config["final_epochs"],
            seed=config["seed"],
        )
        rows.append(
            {
                "trial": t["trial"],
                "arch": t["arch"]["choices"],
                "reward": t["reward"],
                "test_accuracy": metrics["test_accuracy"],
            }
        )
        print("fidelity", rows[-1], flush=True)
        save({"run": str(run), "children": [*rows, *(c for c in done.values() if c not in rows)]})
    rho = spearmanr([r["reward"] for r in rows], [r["test_accuracy"] for r in rows]).statistic
    return {"run": str(run), "children": rows, "spearman_rho": float(rho)}


def measured(result: dict, space: str) -> list[str]:
    """The seeds on which both the hand network and a search of today's `space` are measured (an
    earlier version's searches are HISTORY rows)."""
    entries, today = result["seeds"], space_fingerprint(space)
    return [
        s
        for s in sorted(entries, key=int)
        if "hand" in entries[s] and entries[s].get(key(space), {}).get("space_fingerprint") == today
    ]


def same_split(accuracy: float) -> float:
    """An accuracy on the 1,000 test images, comparable across its sources: Keras reports float32
    (0.9919999837875366), an ensemble's is numpy's float64 (0.992); the same 992 images right."""
    return round(accuracy, 6)


def final_model(nas: dict) -> str:
    """What a saved search returned: an ensemble (each member's own test accuracy) or its winner."""
    if not nas.get("members"):
        return "the winner alone (before ensembles)"
    alone = ", ".join(f"{m['test_accuracy']:.4f}" for m in nas["members"])
    return f"an ensemble of {len(nas['members'])} (alone {alone})"


def hand_spread(result: dict, spaces: list[str]) -> str:
    """How far the hand network moves between trainings on one split, and each space's final models
    against the mean of its trainings."""
    seeds = [s for s in sorted(result["seeds"], key=int) if result["seeds"][s].get("hand_repeats")]
    if not seeds:
        return ""
    trainings = {
        s: [result["seeds"][s]["hand"]["test_accuracy"]]
        + [h["test_accuracy"] for h in result["seeds"][s]["hand_repeats"]]
        for s in seeds
    }
    text = (
        "\n\nThe hand network trained again on the same split with other seeds (initialisation, augmentation, "
        "batch order): "
        + "; ".join(
            f"seed {s}: {', '.join(f'{a:.4f}' for a in accuracies)} (mean {statistics.mean(accuracies):.4f}, "
            f"{round((max(accuracies) - min(accuracies)) * 1000)} test images between the best and the worst)"
            for s, accuracies in trainings.items()
        )
        + "."
    )
    for space in spaces:
        done = [s for s in measured(result, space) if s in trainings]
        if done:
            above = sum(
                same_split(result["seeds"][s][key(space)]["test_accuracy"]) >= same_split(statistics.mean(trainings[s]))
                for s in done
            )
            text += (
                f" {space}'s final models are at or above the mean of the hand network's trainings on {above} of "
                f"{len(done)} seed(s) ("
                + ", ".join(
                    f"{result['seeds'][s][key(space)]['test_accuracy']:.4f} against {statistics.mean(trainings[s]):.4f}"
                    for s in done
                )
                + ")."
            )
    return text


def report(result: dict) -> str:
    spaces = [space for space in SPACES if measured(result, space)]
    rows = [
        [
            f"{h['space']}: {h['label']}",
            str(h["seed"]),
            str(h["children"]),
            f"{h['test_accuracy']:.4f}",
            f"{h['hand']:.4f}" if h["hand"] else "",
            f"{h['wall_min']:.1f}",
            str(h["winner_trial"]),
            f"{h['best_val_accuracy']:.4f}",
            f"{h['params']:,}",
        ]
        for h in HISTORY
    ]
    for space in spaces:
        for s in measured(result, space):
            hand, nas = result["seeds"][s]["hand"], result["seeds"][s][key(space)]
            verdict = (
                "**beats** the hand network"
                if same_split(nas["test_accuracy"]) > same_split(hand["test_accuracy"])
                else (
                    "ties with the hand network"
                    if same_split(nas["test_accuracy"]) == same_split(hand["test_accuracy"])
                    else "**loses** to the hand network"
                )
            )
            rows.append(
                [
                    f"{space}: every default, {final_model(nas)} ({verdict})",
                    s,
                    str(nas.get("trials", nas["budget"])),  # fewer than the budget where a space runs out
                    f"{nas['test_accuracy']:.4f}",
                    f"{hand['test_accuracy']:.4f}",
                    f"{nas['wall_seconds'] / 60:.1f}",
                    " + ".join(str(m["trial"]) for m in nas.get("members") or [{"trial": nas["winner_trial"]}]),
                    f"{nas['best_val_accuracy']:.4f}",
                    f"{nas['params']:,}",
                ]
            )
    text = (
        f"mnist5k, nas's split per seed (3,200 train, 800 validation, 1,000 test). nas: `nas search --space "
        f"SPACE --budget {result['settings']['budget']} --seed S`, every other setting its default (REINFORCE, "
        "2 workers, the space's recipe). The hand network: 3 blocks of two 3x3 conv + BN (32/64/96), max "
        "pooling, global average pooling, dropout 0.3, random translation 0.1 and rotation 0.05, Adam 2e-3 "
        f"cosine, batch 64, {HAND_EPOCHS} epochs on train + validation. Wall: the run's own search and final "
        "training, from config.json's start to summary.json (Ray's start and the data's loading, about 15 s, not "
        "counted).\n\n"
    )
    text += table(
        [
            "space: search",
            "seed",
            "children",
            "nas test accuracy",
            "hand network test accuracy",
            "wall (min)",
            "trial that found the winner (the members)",
            "winner's search reward",
            "final model's parameters",
        ],
        rows,
    )
    hands = [result["seeds"][s]["hand"] for s in sorted(result["seeds"], key=int) if "hand" in result["seeds"][s]]
    if hands:
        text += (
            f"\n\nThe hand network trained in {statistics.mean(h['seconds'] for h in hands):.0f} s on average "
            f"({hands[0]['params']:,} parameters)."
        )
    for space in spaces:
        done = measured(result, space)
        searches = [result["seeds"][s][key(space)] for s in done]
        wins = sum(
            same_split(nas["test_accuracy"]) >= same_split(result["seeds"][s]["hand"]["test_accuracy"])
            for s, nas in zip(done, searches)
        )
        under = sum(nas["wall_seconds"] <= 3600 for nas in searches)
        text += (
            f" {space}: at or above the hand network on {wins} of {len(done)} seed(s), within 60 minutes on "
            f"{under} of {len(done)}"
            + ("" if len(done) >= 3 else f" (only {len(done)} of the 3 seeds the target asks for measured so far)")
            + "; per seed, children stopped early by ASHA "
            + ", ".join(str(nas["trials_stopped_early"]) for nas in searches)
            + ", epochs per child "
            + ", ".join(f"{nas['mean_epochs_per_child']:.2f}" for nas in searches)
            + ", a child's fit seconds per epoch "
            + ", ".join(f"{nas['fit_seconds_per_epoch']:.1f}" for nas in searches)
            + ", mean child parameters "
            + ", ".join(f"{nas['mean_child_params']:,.0f}" for nas in searches)
            + "."
        )
    text += hand_spread(result, spaces)
    if result.get("notes"):
        text += "\n\n" + result["notes"]
    if "fidelity" in result:
        f = result["fidelity"]
        text += (
            f"\n\nReward fidelity: the top {len(f['children'])} children of {Path(f['run']).name}, retrained as "
            "the winner is: Spearman rho between search reward and test accuracy "
            f"**{f['spearman_rho']:.2f}**" + (f" (`{f['command']}`)" if f.get("command") else "") + ".\n\n"
        )
        text += table(
            ["trial", "search reward", "test accuracy after the final training"],
            [[str(c["trial"]), f"{c['reward']:.4f}", f"{c['test_accuracy']:.4f}"] for c in f["children"]],
        )
        rewards = sorted({round(c["reward"], 6) for c in f["children"]})
        tested = [c["test_accuracy"] for c in f["children"]]
        text += (
            f"\n\nThe {len(f['children'])} rewards take {len(rewards)} values ({rewards[0]:.4f} to {rewards[-1]:.4f}: "
            f"{(rewards[-1] - rewards[0]) * 800:.0f} of the 800 validation images) and their test accuracies span "
            f"{min(tested):.4f} to {max(tested):.4f} ({(max(tested) - min(tested)) * 1000:.0f} of the 1,000 test "
            "images): at the top of a search the reward barely ranks the children, so which of them wins is "
            "close to a draw among equals."
        )
        hand = result["seeds"].get("0", {}).get("hand", {}).get("test_accuracy")
        if hand is not None:
            above = sum(same_split(t) >= same_split(hand) for t in tested)
            text += (
                f" Their mean test accuracy is {statistics.mean(tested):.4f}, and {above} of "
                f"the {len(tested)} test at or above the hand network's {hand:.4f} on this seed."
            )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--only",
        help="comma-separated: search only these of the seeds, in this order (the hand network is trained for each)",
    )
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument(
        "--spaces",
        default="cnn10",
        help=f"comma-separated, searched in turn for each seed, of: {', '.join(SPACES)}",
    )
    parser.add_argument(
        "--runs-dir",
        default=str(RESULTS / "hand_network_runs"),
        help="where the searches' run directories go (and are reused from)",
    )
    parser.add_argument(
        "--fidelity",
        type=int,
        default=0,
        metavar="N",
        help="retrain the first seed's top N children and report the rank correlation",
    )
    parser.add_argument(
        "--fidelity-only",
        action="store_true",
        help="with --fidelity: retrain only, the first seed's search as the saved JSON records it",
    )
    parser.add_argument(
        "--hand-repeats",
        type=int,
        default=1,
        metavar="N",
        help="train the hand network N times a seed (the first as always; the others seeded S + 1000 k, same "
        "split) to show how far one training of it moves",
    )
    parser.add_argument("--report-only", action="store_true", help="render RESULTS.md from the saved JSON")
    parser.add_argument(
        "--note",
        help="what the measurements' conditions were, if not an idle machine; kept in "
        "the JSON and printed under the table",
    )
    args = parser.parse_args()
    spaces = args.spaces.split(",")
    if not set(spaces) <= set(SPACES):
        parser.error(f"--spaces {args.spaces}: expected some of {', '.join(SPACES)}")

    order = list(range(args.seeds))
    if args.only:
        try:
            order = [int(s) for s in args.only.split(",")]
        except ValueError:
            parser.error(f"--only {args.only}: expected comma-separated seeds such as 2,0")
        if not set(order) <= set(range(args.seeds)) or len(set(order)) != len(order):
            parser.error(f"--only {args.only}: expected distinct seeds below --seeds {args.seeds}")
        if args.fidelity and not args.fidelity_only and 0 not in order:
            parser.error(f"--only {args.only}: --fidelity retrains seed 0's children, expected 0 among the seeds")

    result = json.loads(OUT.read_text()) if OUT.exists() else {"seeds": {}}
    if args.note:
        result["notes"] = args.note
    if args.hand_repeats < 1:
        parser.error(f"--hand-repeats {args.hand_repeats}: expected at least 1 (the training every seed has)")
    if args.fidelity_only and not args.fidelity:
        parser.error("--fidelity-only: expected --fidelity N beside it")
    if not (args.report_only or args.fidelity_only):
        result["settings"] = {"budget": args.budget, "seeds": args.seeds}
    if not args.report_only:
        from nas.data import load_data

        for seed in [] if args.fidelity_only else order:
            entry = result["seeds"].setdefault(str(seed), {})
            data = load_data("mnist5k", seed=seed)
            if "hand" not in entry:
                entry["hand"] = train_hand(data, seed)
                print("hand", seed, entry["hand"], flush=True)
            repeats = entry.setdefault("hand_repeats", [])
            while len(repeats) < args.hand_repeats - 1:
                repeats.append(train_hand(data, seed + 1000 * (len(repeats) + 1)))
                print("hand again", seed, repeats[-1], flush=True)
                OUT.write_text(json.dumps(result, indent=1))
            for space in spaces:
                if (
                    current(entry.get(key(space)), space, args.budget)
                    and finished_run(Path(args.runs_dir) / f"{space}-seed{seed}", space) is None
                ):
                    print(space, seed, "kept from", OUT.name, flush=True)
                    continue
                entry[key(space)] = search(space, seed, args)
                print(space, seed, entry[key(space)], flush=True)
                RESULTS.mkdir(exist_ok=True)
                OUT.write_text(json.dumps(result, indent=1))
        if args.fidelity:

            def save(partial: dict) -> None:
                OUT.write_text(json.dumps({**result, "fidelity_partial": partial}, indent=1))

            known = result.pop("fidelity_partial", None) or result.get("fidelity")
            result["fidelity"] = fidelity(Path(result["seeds"]["0"]["nas"]["run"]), args.fidelity, known, save)
            result["fidelity"]["command"] = command_line()
            OUT.write_text(json.dumps(result, indent=1))
    # the section's command stays the one that ran the searches when only the fidelity was measured
    finish(OUT, result, "Against a hand-written network", report, measured=not (args.report_only or args.fidelity_only))


if __name__ == "__main__":
    main()
