"""cnn10_aug's searched augmentation against a fixed one, on the same architectures (issue 20).

    python benchmarks/augment_choice.py [--seeds 0,1,2] [--jobs 2]
    python benchmarks/augment_choice.py --report-only

cnn10_aug is cnn10 with its augmentation as decisions. For each default cnn10_aug search that
benchmarks/hand_network.py recorded (its run directory must still be there), the best two children,
ranked as the search ranks them (the ensemble cnn10_aug.yaml returns), are retrained on train +
validation under the space's final recipe twice, side by side: with the augmentation the search
chose for each, and with cnn10's fixed one (cnn10.yaml's `augment:`, every other augmentation off),
the architecture unchanged. Each member's and their average's test accuracy on the search's split,
against the hand network's: what the augmentation decisions cost or bought over a fixed choice. A
seed's retrainings stay those of the search they were measured on (the JSON names its run directory):
the searches measured were of cnn10_aug with `augment: standard`, before cnn10's augmentation became
the least it searches.

Trainings run in `--jobs` processes of one TensorFlow thread each, as a search's ensemble members
do. Writes benchmarks/results/augment_choice.json after every training (a killed run goes on where
it stopped; test probabilities kept in runs/augment_choice/, git-ignored) and the "Searched
augmentation against a fixed one" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble import averaged_accuracy, ranked, retrained_probabilities  # noqa: E402
from results_md import finish, run_in_processes, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "augment_choice.json"
HAND = RESULTS / "hand_network.json"
PROBABILITIES = ROOT / "runs" / "augment_choice"
ARMS = ("searched", "fixed")
MEMBERS = 2
# The space fingerprint of cnn10_aug with `augment: standard`, the searches this script measures:
# today's cnn10_aug (since 6a117df) cannot turn translation or rotation off.
STANDARD = "cdf60ac8032712de"


def fixed_augmentation(values: dict, space_file: str) -> dict:
    """`values` (a child's decisions in the space of `space_file`, its search's space.yaml) with
    cnn10's fixed augmentation in place of the searched one: each augmentation cnn10 sets at its
    value, the others at their off choice."""
    from search_spaces import load_space

    fixed = load_space("cnn10").fixed["augment"]
    space = load_space(space_file)
    changed = dict(values)
    for decision in space.decisions:
        if decision.name.startswith("augment."):
            name = decision.name.removeprefix("augment.")
            changed[decision.name] = fixed.get(name, decision.choices[0])
            if changed[decision.name] not in decision.choices:
                raise SystemExit(f"cnn10.yaml augment.{name}: {fixed[name]} is not among cnn10_aug's choices")
    return changed


def probabilities_file(seed: int, trial: int, arm: str) -> Path:
    return PROBABILITIES / f"seed{seed}-trial{trial}-{arm}.npy"


def retrain(seed: int, values: dict, trial: int, arm: str, space_file: str) -> dict:
    """A child of the search's own space (`space_file`, its space.yaml) retrained as the search
    retrains its ensemble's members, with the `arm`'s augmentation; keeps its test probabilities."""
    import numpy as np

    trained = values if arm == "searched" else fixed_augmentation(values, space_file)
    probabilities, metrics = retrained_probabilities(space_file, seed, trained)
    np.save(probabilities_file(seed, trial, arm), probabilities)
    augment = {k.removeprefix("augment."): v for k, v in trained.items() if k.startswith("augment.")}
    return {"test_accuracy": metrics["test_accuracy"], "fit_seconds": metrics["fit_seconds"], "augment": augment}


def key(seed: int, trial: int, arm: str) -> str:
    return f"seed{seed}/trial{trial}/{arm}"


def run(result: dict, seeds: list[int], jobs: int) -> None:
    PROBABILITIES.mkdir(parents=True, exist_ok=True)
    hand = json.loads(HAND.read_text())["seeds"]
    todo = []
    for seed in seeds:
        entry = hand.get(str(seed), {}).get("nas cnn10_aug")
        run_dir = Path(entry["run"]) if entry else None
        if not run_dir or not (run_dir / "trials.jsonl").is_file():
            print(f"seed {seed}: no cnn10_aug search of hand_network.py on this machine; left out", flush=True)
            continue
        if entry.get("space_fingerprint") != STANDARD:
            print(f"seed {seed}: a search of today's cnn10_aug, not of augment: standard; left out", flush=True)
            continue
        known = result["searches"].get(str(seed), {}).get("run")
        if known and known != str(run_dir):
            print(f"seed {seed}: {OUT.name} holds the retrainings of another search ({known}); left out", flush=True)
            continue
        best = ranked(run_dir)[:MEMBERS]
        result["searches"][str(seed)] = {"run": str(run_dir), "members": [r["trial"] for r in best]}
        for record in best:
            for arm in ARMS:
                if key(seed, record["trial"], arm) not in result["runs"]:
                    todo.append((seed, record["values"], record["trial"], arm, str(run_dir / "space.yaml")))
    print(f"{len(todo)} trainings to run", flush=True)
    run_in_processes(result, OUT, {key(job[0], job[2], job[3]): (retrain, job) for job in todo}, jobs)
    score(result, [str(seed) for seed in seeds])


def score(result: dict, seeds: list[str]) -> None:
    """The ensemble test accuracy per arm of the searches of `seeds`, where both members of the arm
    are trained here (a score saved before is kept where their probabilities are not on this machine)."""
    import numpy as np

    from nas.data import load_data

    for seed, entry in result["searches"].items():
        if seed not in seeds:
            continue
        y_test = load_data("mnist5k", seed=int(seed)).final_arrays()["y_test"]
        entry.setdefault("ensemble", {})
        for arm in ARMS:
            files = [probabilities_file(int(seed), trial, arm) for trial in entry["members"]]
            if all(f.is_file() for f in files):
                entry["ensemble"][arm] = averaged_accuracy([np.load(f) for f in files], y_test)
    OUT.write_text(json.dumps(result, indent=1))


def described(augment: dict) -> str:
    """The augmentations that are on, in words: "translation 0.1, rotation 0.05"."""
    return ", ".join(f"{name} {value}" for name, value in augment.items() if value) or "none"


def report(result: dict) -> str:
    from search_spaces import load_space

    hand = json.loads(HAND.read_text())["seeds"]
    fixed = described(load_space("cnn10").fixed["augment"])
    epochs = load_space("cnn10_aug").fixed["training"]["final_epochs"]
    rows, gains = [], []
    for seed, entry in sorted(result["searches"].items(), key=lambda item: int(item[0])):
        runs = [{arm: result["runs"].get(key(int(seed), t, arm)) for arm in ARMS} for t in entry["members"]]
        cells = []
        for arm in ARMS:
            own = ", ".join(f"{r[arm]['test_accuracy']:.4f}" if r[arm] else "-" for r in runs)
            together = entry.get("ensemble", {}).get(arm)
            cells += [own, f"{together:.4f}" if together is not None else "-"]
        if len(entry.get("ensemble", {})) == len(ARMS):
            gains.append(entry["ensemble"]["fixed"] - entry["ensemble"]["searched"])
        searched = "; ".join(described(r["searched"]["augment"]) for r in runs if r["searched"])
        hand_accuracy = hand[seed]["hand"]["test_accuracy"]
        rows.append([seed, " + ".join(map(str, entry["members"])), searched, *cells, f"{hand_accuracy:.4f}"])
    text = (
        "The best two children of each default cnn10_aug search of `augment: standard` (every augmentation a "
        f"decision that may be off, before 6a117df), retrained on train + validation ({epochs} "
        f"epochs, one thread each) with the augmentation the search chose and with cnn10's fixed one ({fixed}), "
        "the architecture unchanged; test accuracy on the search's split:\n\n"
        + table(
            [
                "seed",
                "members (trials)",
                "searched augmentation (per member)",
                "searched: members",
                "searched: ensemble",
                "fixed: members",
                "fixed: ensemble",
                "hand network",
            ],
            rows,
        )
    )
    if gains:
        text += (
            f"\n\nThe fixed augmentation's ensemble minus the searched one's: {statistics.mean(gains) * 1000:+.1f} "
            f"test images of 1,000 on average over {len(gains)} search(es) "
            f"({', '.join(f'{g * 1000:+.0f}' for g in gains)})."
        )
    return text + ("\n\n" + result["note"] if result.get("note") else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="the searches' seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, one TensorFlow thread each")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", default=None, help="a paragraph saved below the table")
    args = parser.parse_args(argv)
    result = json.loads(OUT.read_text()) if OUT.exists() else {"searches": {}, "runs": {}}
    if args.note is not None:
        result["note"] = args.note
    if not args.report_only:
        run(result, [int(s) for s in args.seeds.split(",")], args.jobs)
    finish(OUT, result, "Searched augmentation against a fixed one", report, measured=not args.report_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
