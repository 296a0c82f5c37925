"""One search from start to end: validate everything, run the trials on Ray Tune, retrain the
winner, test it once, and write the run directory.

    summary = run_search(SearchConfig(space="cnn10", budget=200))
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from controllers import make_controller
from nas import progress
from nas.config import SearchConfig
from nas.data import load_data
from nas.errors import InputError, SearchStopped
from nas.quiet import import_tensorflow
from nas.rundir import RunDir
from nas.search import Search
from search_spaces import load_space


def run_search(config: SearchConfig) -> dict[str, Any]:
    # Everything the user gave is checked before Ray starts or any file is written.
    space = load_space(config.space)
    training = space.fixed["training"]
    config = replace(config, epochs=config.epochs or training["search_epochs"],
                     final_epochs=config.final_epochs or training["final_epochs"],
                     name=config.name or f"{space.name}-{datetime.now():%Y%m%d-%H%M%S}")
    if not all(c.isalnum() or c in "-_." for c in config.name) or config.name.startswith("."):
        raise InputError(f"--name: got {config.name!r}, expected letters, digits, '-', '_' or '.'")
    rundir = RunDir(Path(config.runs_dir) / config.name)
    rundir.check_new()
    data = load_data(config.data, config.image_size, config.color_mode, seed=config.seed)
    import_tensorflow()  # the REINFORCE controller runs on TensorFlow in this process
    controller = make_controller(config.controller, space, seed=config.seed)

    from nas import tune  # Ray is imported only once the input is known to be good

    resources = tune.Resources(cpus=config.cpus_per_trial, gpus=config.gpus_per_trial, tpus=1 if config.tpu else 0)
    cluster = tune.connect(config.address, config.dashboard)
    try:
        tune.check_resources(cluster, resources)
        config = replace(config, workers=config.workers or tune.default_workers(cluster, resources))
        rundir.create()
        resolved = {**config.to_json(), "space_file": space.source, "space_fingerprint": space.fingerprint(),
                    "space_size": space.describe_size(), "data_summary": data.describe(),
                    "training": space.fixed["training"], "controller_settings": controller.settings_json(),
                    "ray_resources": {k: v for k, v in cluster.resources.items() if k in ("CPU", "GPU", "TPU")},
                    "dashboard_url": cluster.dashboard_url}
        rundir.write_json("config.json", resolved)
        rundir.write_text("space.yaml", space.text)
        progress.console.print(f"[bold]nas search[/bold] {rundir.path}")
        progress.print_settings(resolved)
        if cluster.dashboard_url:
            progress.console.print(f"Ray dashboard: {cluster.dashboard_url}")
        # The winner's retraining gets the CPUs of all workers (and one trial's accelerators).
        final_resources = tune.Resources(cpus=min(config.cpus_per_trial * config.workers, cluster.largest_node_cpus),
                                         gpus=resources.gpus, tpus=resources.tpus)
        return _search(config, space, data, controller, rundir, resources, final_resources)
    finally:
        tune.disconnect()


def _search(config: SearchConfig, space, data, controller, rundir: RunDir, resources, final_resources) -> dict[str, Any]:
    from nas import tune

    printer = progress.TrialPrinter(config.budget)
    search = Search(space, controller, rundir, config.budget, on_record=printer)
    start = time.perf_counter()
    tune.run_trials(search, data.search_arrays(), input_shape=data.input_shape, num_classes=data.num_classes,
                    epochs=config.epochs, seed=config.seed, resources=resources, workers=config.workers,
                    storage=str(rundir.path))
    search_seconds = time.perf_counter() - start
    fit_seconds = sum(r["metrics"]["fit_seconds"] for r in search.completed)
    summary: dict[str, Any] = {
        "space": space.name, "budget": config.budget, "controller": config.controller,
        "trials_completed": len(search.completed), "trials_failed": len(search.failed),
        "duplicates_skipped": search.duplicates, "best": None, "test_accuracy": None,
        "workers": config.workers, "search_wall_seconds": search_seconds, "child_fit_seconds": fit_seconds,
        "engine_overhead": 1 - fit_seconds / (config.workers * search_seconds),
    }
    best = search.best()
    if best is None:
        summary.update(status="failed", wall_seconds=search_seconds)
        rundir.write_json("summary.json", summary)
        raise SearchStopped(f"no child trained successfully ({len(search.failed)} failed); see {rundir.file('trials.jsonl')}")
    summary["best"] = {"trial": best["trial"], "arch": best["arch"], "values": best["values"],
                       "val_accuracy": best["reward"]}
    progress.console.print(f"Retraining trial {best['trial']} on train + validation for {config.final_epochs} epochs ...")
    model_bytes, final = tune.train_final(space.resolve(space.from_json(best["arch"])), data.final_arrays(),
                                          input_shape=data.input_shape, num_classes=data.num_classes,
                                          epochs=config.final_epochs, seed=config.seed, resources=final_resources)
    rundir.write_bytes("best/model.keras", model_bytes)
    summary.update(status="finished", test_accuracy=final["test_accuracy"], final=final,
                   wall_seconds=time.perf_counter() - start)
    rundir.write_json("summary.json", summary)
    progress.print_top(search.records, final["test_accuracy"])
    progress.console.print(f"search {progress.duration(search_seconds)} (engine overhead "
                           f"{summary['engine_overhead']:.1%}), final training {progress.duration(final['fit_seconds'])}; "
                           f"results in {rundir.path}")
    return summary
