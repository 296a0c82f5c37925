"""The Ray Tune adapter, driven by hand without starting Ray (as Ray's own searcher tests do)."""

import json
from types import SimpleNamespace

import pytest
from ray.tune.search import Searcher

from controllers.random_search import RandomController
from nas.cluster import Cluster, Resources, check_resources, default_workers
from nas.errors import InputError
from nas.rundir import RunDir
from nas.search_state import Search
from nas.tune import ControllerSearcher, worker_death_reason
from search_spaces import parse_space

SPACE = parse_space("family: dense\nlayers: 1\nlayer: {units: [8, 16, 32]}\n")


def test_searcher_hands_out_configs_and_records_what_ray_reports(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    searcher = ControllerSearcher(Search(SPACE, RandomController(SPACE, seed=0), rundir, budget=2))
    a, b = searcher.suggest("ray-a"), searcher.suggest("ray-b")
    assert (a["trial"], b["trial"]) == (1, 2) and a["spec"]["family"] == "dense"
    assert searcher.suggest("ray-c") == Searcher.FINISHED  # the budget is spent
    searcher.on_trial_complete("ray-b", {"status": "completed", "val_accuracy": 0.7, "fit_seconds": 1.0})
    searcher.started.on_trial_start(0, [], SimpleNamespace(trial_id="ray-a", error_file=None))
    searcher.on_trial_complete("ray-a", None, error=True)  # the worker died before it reported
    records = [json.loads(line) for line in rundir.file("trials.jsonl").read_text().splitlines()]
    assert [(r["trial"], r["status"]) for r in records] == [(2, "completed"), (1, "failed")]
    assert records[1]["error"].startswith("WorkerDied: the worker process died")


def test_a_trial_whose_worker_died_before_it_started_runs_again(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    searcher = ControllerSearcher(Search(SPACE, RandomController(SPACE, seed=0), rundir, budget=1))
    first = searcher.suggest("ray-a")
    searcher.on_trial_complete("ray-a", None, error=True)  # Tune failed to reset an idle worker for it
    again = searcher.suggest("ray-b")
    assert again["trial"] == first["trial"] and again["spec"] == first["spec"]
    assert searcher.suggest("ray-c") == Searcher.FINISHED and not rundir.file("trials.jsonl").exists()


def test_workers_whose_memory_grew_past_the_limit_are_replaced(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    searcher = ControllerSearcher(
        Search(SPACE, RandomController(SPACE, seed=0), rundir, budget=3), worker_memory_growth=500
    )
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first["generation"] == second["generation"] == 0
    done = {"status": "completed", "val_accuracy": 0.5, "fit_seconds": 1.0, "pid": 7}
    searcher.on_trial_complete("a", {**done, "worker_rss_mb": 900.0})
    searcher.on_trial_complete("b", {**done, "worker_rss_mb": 1401.0})
    assert searcher.suggest("c")["generation"] == 1  # a new placement request: Tune starts new workers


def test_a_dead_workers_reason_is_read_from_rays_report():
    report = (
        "Failure # 1\nThe actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n"
        "\tpid: 24304\nThe actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
        "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of file. Some "
        "common causes include: (1) the process was killed by the OOM killer due to high memory usage"
    )
    assert worker_death_reason(report) == (
        "the worker process (24304) died: Worker unexpectedly exits with a connection error code 2. End of file."
    )
    assert worker_death_reason("") == "the worker process died or Ray stopped the trial before it reported"


def cluster(**resources):
    return Cluster(None, {"CPU": 8.0, **resources}, largest_node_cpus=4.0, address=None)


def test_workers_follow_the_cluster_and_the_resources_per_trial():
    assert default_workers(cluster(), Resources(cpus=1)) == 8
    assert default_workers(cluster(), Resources(cpus=3)) == 2
    assert default_workers(cluster(GPU=2.0), Resources(cpus=1, gpus=1)) == 2
    assert default_workers(cluster(TPU=4.0), Resources(cpus=1, tpus=1)) == 4
    assert Resources(cpus=2, tpus=1).bundle() == {"CPU": 2, "GPU": 0, "TPU": 1}


@pytest.mark.parametrize(
    "resources, message",
    [
        (Resources(cpus=6), r"cpus_per_trial: a trial asks for 6 CPU, but its largest node has 4"),
        (Resources(gpus=1), r"gpus_per_trial: a trial asks for 1 GPU, but the Ray cluster has 0"),
        (Resources(tpus=1), r"tpu: a trial asks for 1 TPU, but the Ray cluster has 0"),
    ],
)
def test_requests_no_node_can_meet_are_refused(resources, message):
    with pytest.raises(InputError, match=message):
        check_resources(cluster(), resources)
    check_resources(cluster(GPU=1.0, TPU=1.0), Resources(cpus=4, gpus=1, tpus=1))
