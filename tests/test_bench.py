"""Tabular benchmarks: a real (tiny) build through the trainer, its resumption, and replays of the
shipped table through the CLI."""

import gzip
import json

import numpy as np
import pytest

import nas.bench as bench
from controllers.reinforce import PLAIN_REINFORCE
from nas.bench import build_table, load_table, progress_path, replay
from nas.cli import run
from nas.errors import InputError
from nas.objective import Objective
from nas.progress import Recorder, reporting
from search_spaces import iter_architectures, load_space, parse_space

# 8 architectures, each trained in about a second: softmax regression with 9 steps an epoch.
TINY = """
name: tiny
family: linear
l2: [0.0, 0.001]
training: {learning_rate: [0.001, 0.003, 0.01, 0.03], batch_size: 128, search_epochs: 1}
"""


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json.gz"
    with reporting(Recorder()) as recorder:
        table = build_table(parse_space(TINY, source="tiny.yaml"), out, data="digits", seeds=1, epochs=1)
    return out, table, recorder.lines


def test_a_build_trains_every_architecture_and_stores_what_a_replay_needs(tiny_table):
    out, table, lines = tiny_table
    space = parse_space(TINY, source="tiny.yaml")
    with gzip.open(out, "rt") as f:
        assert json.load(f) == table
    assert table["space"] == {
        "name": "tiny",
        "fingerprint": space.fingerprint(),
        "text": TINY,
        "decisions": ["l2", "training.learning_rate"],
        "size": 8,
    }
    assert (table["data"], table["epochs"], table["seeds"], table["split_seed"]) == ("digits", 1, [0], 0)
    assert {"created", "machine"} <= set(table) and table["machine"]["tensorflow"]
    rows = table["architectures"]
    assert [r["choices"] for r in rows] == [list(a.choices) for a in iter_architectures(space)]
    for r in rows:
        assert r["params"] == 650  # 64 pixels x 10 classes + 10 biases
        assert all(0.0 <= v <= 1.0 for v in r["val_accuracy"] + r["test_accuracy"])
        assert len(r["val_accuracy"]) == len(r["test_accuracy"]) == len(r["fit_seconds"]) == 1
    assert max(r["test_accuracy"][0] for r in rows) > 0.5  # the larger learning rates learn in one epoch
    assert "0 done already, 8 to train" in lines[0]
    assert len(progress_path(out).read_text().splitlines()) == 9  # a header and a line per child


def test_a_killed_build_resumes_without_retraining_what_is_done(tiny_table, tmp_path, monkeypatch):
    out, table, _ = tiny_table
    progress = progress_path(out).read_text().splitlines()
    target = tmp_path / "tiny.json.gz"
    # Killed while writing the fifth child's line: four whole lines survive, the fifth is torn.
    progress_path(target).write_text("\n".join(progress[:5]) + "\n" + progress[5][:17])
    trained = []
    real = bench._train_one

    def counting(task):
        trained.append(task[0])
        return real(task)

    monkeypatch.setattr(bench, "_train_one", counting)
    with reporting(Recorder()) as recorder:
        again = build_table(parse_space(TINY, source="tiny.yaml"), target, data="digits", seeds=1, epochs=1)
    assert sorted(trained) == [4, 5, 6, 7] and "4 done already, 4 to train" in recorder.lines[0]
    assert again["architectures"][:4] == table["architectures"][:4]
    assert len(progress_path(target).read_text().splitlines()) == 9  # the torn line was cut, not kept
    trained.clear()
    build_table(parse_space(TINY, source="tiny.yaml"), target, data="digits", seeds=1, epochs=1)
    assert trained == []  # everything done: the table is compiled again, nothing trained
    other = TINY.replace("[0.0, 0.001]", "[0.0, 0.01]")
    with pytest.raises(
        InputError,
        match=r"tiny.progress.jsonl: a build with space_fingerprint '\w+' is in progress, "
        r"got '\w+'; expected the same space",
    ):
        build_table(parse_space(other), target, data="digits", seeds=1, epochs=1)


def test_bad_tables_and_builds_are_refused_with_one_line(tmp_path):
    with pytest.raises(InputError, match=r"table: nothere: no such table, expected a table name \(.*bench_cnn"):
        load_table("nothere")
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match=r"table: .*bad.json.gz: not a readable table \(BadGzipFile"):
        load_table(tmp_path / "bad.json.gz")
    with pytest.raises(InputError, match=r"out: got '.*t.json', expected a file name ending in .json.gz"):
        build_table(parse_space(TINY), tmp_path / "t.json")
    with pytest.raises(InputError, match=r"space: cnn10.yaml: 2.57e29 architectures, expected at most 5,000"):
        build_table(load_space("cnn10"), tmp_path / "t.json.gz")


def test_the_shipped_table_is_complete():
    table = load_table("bench_cnn")
    assert len(table.archs) == table.space.size() == 252 and table.val.shape == table.test.shape == (252, 3)
    assert 0.0 <= table.val.min() and table.val.max() <= 1.0 and 0.0 <= table.test.min() and table.test.max() <= 1.0
    assert 3 <= int(table.top.sum()) <= 6 and table.space.fingerprint() == load_space("bench_cnn").fingerprint()


def test_replay_of_the_shipped_table_through_the_cli(tmp_path, capsys):
    out, plot = tmp_path / "out.json", tmp_path / "out.png"
    code = run(
        [
            "bench",
            "run",
            "--table",
            "bench_cnn",
            "--controllers",
            "random,evolution,reinforce",
            "--seeds",
            "3",
            "--budget",
            "30",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    results = json.loads(out.read_text())
    assert set(results["controllers"]) == {"random", "evolution", "reinforce"}
    for name, r in results["controllers"].items():
        assert name in printed
        assert 1 <= r["median_trials_to_top1pct"] <= 31
        assert 1 <= r["iqr_trials_to_top1pct"][0] <= r["iqr_trials_to_top1pct"][1] <= 31
        assert set(r["best_test_at"]) == {"25", "30"}
        assert all(0.0 <= v <= 1.0 for v in r["best_test_at"].values())
        assert len(r["mean_best_test_curve"]) == 30 and len(r["trials_to_top1pct"]) == 3
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_a_replay_is_reproducible_and_never_spends_budget_on_a_duplicate():
    table = load_table("bench_cnn")
    a = replay(table, ["evolution"], seeds=2, budget=60)["controllers"]["evolution"]
    b = replay(table, ["evolution"], seeds=2, budget=60)["controllers"]["evolution"]
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert a["duplicates_told"] > 0  # evolution's mutants often repeat an architecture of a 252-space
    for name in ("random", "evolution"):
        run = bench.replay_one(table, name, seed=0, budget=120)
        assert run["trained"] == 120 and not run["stopped_early"]  # 120 trials, 120 distinct architectures
        assert run["duplicates"] > 0 and run["trials_to_top1pct"] is not None
    # REINFORCE asks what it has not asked before while its draws find such architectures.
    run = bench.replay_one(table, "reinforce", seed=0, budget=120)
    assert run["trained"] == 120 and not run["stopped_early"]
    # Plain REINFORCE with the settings bench_cnn.yaml once had settled on a few architectures and
    # asked them again and again: after 200 duplicates in a row the search stops, as
    # nas.search_state does, and keeps its best.
    plain = {**PLAIN_REINFORCE, "learning_rate": 0.01, "temperature": 1.0, "batch_size": 1, "baseline_decay": 0.95}
    run = bench.replay_one(table, "reinforce", seed=0, budget=120, overrides=plain)
    assert run["stopped_early"] and run["trained"] < 120 and run["duplicates"] >= 200
    assert len(run["curve"]) == 120 and run["curve"][-1] == run["curve"][run["trained"] - 1]


def test_a_small_parameter_target_makes_smaller_winners_on_the_table():
    table = load_table("bench_cnn")
    small = Objective.parse("accuracy-params", target_params=2_000)
    for name in ("random", "evolution"):
        plain = replay(table, [name], seeds=5, budget=50)["controllers"][name]
        frugal = replay(table, [name], seeds=5, budget=50, objective=small)["controllers"][name]
        # Winners of accuracy alone have medians of 6,000 to 11,000 parameters; with the target, under 2,500.
        assert frugal["median_winner_params"] < 2_500 < plain["median_winner_params"], (name, plain, frugal)
    with pytest.raises(InputError, match="objective: got 'accuracy-latency', expected accuracy or accuracy-params"):
        replay(table, ["random"], seeds=1, budget=5, objective=Objective.parse("accuracy-latency", target_latency_ms=1))


def test_an_nk_landscape_is_made_from_its_parameters_and_seed_alone():
    from nas.landscapes import load_landscape

    a, b = load_table("nk:n=6,c=3,k=2,noise=0.01,seed=5"), load_landscape("nk:seed=5,k=2,c=3,n=6,noise=0.01")
    other = load_landscape("nk:n=6,c=3,k=2,noise=0.01,seed=6")
    grid = np.random.default_rng(0).integers(3, size=(50, 6))
    assert np.array_equal(a.qualities(grid), b.qualities(grid)) and not np.allclose(
        a.qualities(grid), other.qualities(grid)
    )
    assert a.exact and a.size == a.space.size() == 3**6 and a.top_count == 8  # ceil(1 % of 729)
    every = a.qualities(np.indices((3,) * 6).reshape(6, -1).T)
    assert (every >= a.top_threshold).sum() == 8 and every.max() == a.best and 0 <= every.min() <= every.max() <= 1
    # An observation is the quality plus noise from the replay's own generator: the same seed, the same noise.
    arch = a.space.architecture([2, 1, 0, 0, 1, 2])
    seen = [a.observe(arch, np.random.default_rng(1))[0] for _ in range(2)]
    assert seen[0] == seen[1] != a.quality(arch) and abs(seen[0] - a.quality(arch)) < 0.05
    # Without epistasis each decision adds its own part, whatever the others choose.
    additive = load_landscape("nk:n=5,c=4,k=0")
    x = np.random.default_rng(2).integers(4, size=(20, 5))
    y = x.copy()
    y[:, 3] = (x[:, 3] + 1) % 4
    gain = additive.qualities(y) - additive.qualities(x)
    assert np.allclose(gain[x[:, 3] == 0], gain[x[:, 3] == 0][0])
    # Too large to score every architecture: the top 1 % is the 99th percentile of a fixed sample.
    large = load_landscape("nk:n=20,c=5,k=1")
    assert not large.exact and large.top_count is None and large.best > large.top_threshold > large.median


def test_a_replay_compares_controllers_on_several_tables_through_the_cli(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = run(
        ["bench", "run", "--table", "nk:n=6,c=4,k=1", "--table", "bench_cnn", "--controllers", "random,evolution"]
        + ["--seeds", "3", "--budget", "40", "--first-seed", "10", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    first, second = json.loads(out.read_text())["tables"]
    assert first["table"] == "nk:n=6,c=4,k=1,noise=0.005,seed=0" and first["data"] == "synthetic"
    assert first["architectures"] == 4096 and first["top1pct_architectures"] == 41
    assert second["space"] == "bench_cnn" and first["first_seed"] == second["first_seed"] == 10
    assert "4,096 architectures (6 decisions of 4 choices, 1 neighbours each)" in printed
    for r in (first, second):
        assert set(r["controllers"]) == {"random", "evolution"}
        assert all(len(c["trials_to_top1pct"]) == 3 for c in r["controllers"].values())
