"""The Ray Tune adapter, driven by hand without starting Ray (as Ray's own searcher tests do)."""

import json

import pytest
from ray.tune.search import Searcher

from controllers.random_search import RandomController
from nas.errors import InputError
from nas.rundir import RunDir
from nas.search import Search
from nas.tune import Cluster, ControllerSearcher, Resources, check_resources, default_workers
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
    searcher.on_trial_complete("ray-a", None, error=True)  # the worker died before it reported
    records = [json.loads(line) for line in rundir.file("trials.jsonl").read_text().splitlines()]
    assert [(r["trial"], r["status"]) for r in records] == [(2, "completed"), (1, "failed")]
    assert "worker died" in records[1]["error"]


def cluster(**resources):
    return Cluster(None, {"CPU": 8.0, **resources}, largest_node_cpus=4.0, address=None)


def test_workers_follow_the_cluster_and_the_resources_per_trial():
    assert default_workers(cluster(), Resources(cpus=1)) == 8
    assert default_workers(cluster(), Resources(cpus=3)) == 2
    assert default_workers(cluster(GPU=2.0), Resources(cpus=1, gpus=1)) == 2
    assert default_workers(cluster(TPU=4.0), Resources(cpus=1, tpus=1)) == 4
    assert Resources(cpus=2, tpus=1).bundle() == {"CPU": 2, "GPU": 0, "TPU": 1}


@pytest.mark.parametrize("resources, message", [
    (Resources(cpus=6), r"--cpus-per-trial: a trial asks for 6 CPU, but its largest node has 4"),
    (Resources(gpus=1), r"--gpus-per-trial: a trial asks for 1 GPU, but the Ray cluster has 0"),
    (Resources(tpus=1), r"--tpu: a trial asks for 1 TPU, but the Ray cluster has 0"),
])
def test_requests_no_node_can_meet_are_refused(resources, message):
    with pytest.raises(InputError, match=message):
        check_resources(cluster(), resources)
    check_resources(cluster(GPU=1.0, TPU=1.0), Resources(cpus=4, gpus=1, tpus=1))
