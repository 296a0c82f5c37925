"""One search from start to end: validate everything, run the trials on Ray Tune, retrain the
winner, test it once, and write the run directory.

    summary = run_search(SearchConfig(space="cnn10", budget=200))
    summary = run_search(SearchConfig(name="cnn10-1", budget=300), resume=True, given={"budget"})

A resumed search reads its settings from the run's config.json and its space from the run's copy
of the space file; `given` names the settings the user passed, which may change only how the search
runs (`SearchConfig.RESUMABLE`), not what it searches.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from controllers import controller_settings, make_controller
from controllers.fixed_list import FixedListController
from nas import accelerators, applications, enas, ensemble, progress, transfer
from nas.config import SearchConfig
from nas.data import from_arrays, load_data
from nas.dataset import Dataset, data_fingerprint
from nas.errors import InputError, SearchInterrupted, SearchStopped
from nas.objective import Objective
from nas.quiet import import_tensorflow
from nas.run import BASE_FILE, DATA_FILE, read_config, read_space, read_summary, read_trials
from nas.rundir import RunDir
from nas.search_state import Search, failure_reward_setting
from nas.tensorboard import TensorBoardLog
from nas.trial_record import TrialRecord, top_trials
from nas.worker import Job, one_line
from search_spaces import SearchSpace, load_space

STANDALONE_BUDGET = 200


def run_search(
    config: SearchConfig, resume: bool = False, given: Collection[str] = (), arrays: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Runs a search to its end and returns its summary. `arrays` are in-memory images instead of
    config.data (nas.data.checked_arrays: x, y, and optionally validation and test splits and class
    names); the run directory keeps them as data.npz, which config.json's data then names."""
    # Everything the user gave is checked before Ray starts or any file is written.
    if resume:
        rundir, config, space, saved = _resumed(config, given)
    else:
        rundir, config, space, saved = _new(config)
    if config.address == "local":  # as no --address; given on resume, it drops the run's saved address
        config = replace(config, address=None)
    objective = Objective.parse(
        config.objective, config.target_params, config.target_latency_ms, config.objective_weight
    )
    plan = accelerators.choose(config.gpus_per_trial, config.tpu, config.mixed_precision)
    _check_scheduler(config)
    try:
        if config.address:  # before the slow steps: Ray would retry an unreachable head for minutes
            from nas.cluster import check_reachable

            check_reachable(config.address)
        tracker = _tracker(config)
        files = {}  # what a new run directory is created with, beside config.json and space.yaml
        if arrays is not None:
            data, files[DATA_FILE] = from_arrays(arrays, seed=config.seed)
            if saved is None:
                config = replace(config, data=str(rundir.file(DATA_FILE)))
        else:
            data = load_data(config.data, config.image_size, config.color_mode, seed=config.seed)
        if config.strategy == "enas":
            from nas import supernet

            problem = supernet.supported(space, data.input_shape)
            if problem:
                raise InputError(f"strategy: enas needs a supernet, but {problem}")
        fingerprint = data_fingerprint(data)
        if saved and saved.get("data_fingerprint", fingerprint) != fingerprint:
            raise InputError(
                f"data: {config.data}: the images differ from those run {rundir.name!r} started "
                "with; expected the same data (or a new search)"
            )
        import_tensorflow()  # the REINFORCE controller runs on TensorFlow in this process
        base = _base(config, space, data, rundir, saved)
        if base and saved is None:
            files[BASE_FILE] = base
        if config.strategy == "enas":  # the finalists, given once the supernet phase has chosen them
            controller = FixedListController(space, seed=config.seed)
        else:
            controller = make_controller(config.controller, space, seed=config.seed, budget=config.budget)
        return _run(
            config,
            space,
            data,
            fingerprint,
            controller,
            objective,
            rundir,
            saved,
            base,
            plan,
            files if saved is None else {},
            tracker,
        )
    finally:
        rundir.unlock()


def _tracker(config: SearchConfig):
    """The MLflow tracker of --mlflow, its server checked now (nas.tracking); None without it."""
    if config.mlflow_register and not config.mlflow:
        raise InputError(
            f"mlflow_register: got {config.mlflow_register!r} without --mlflow, expected a tracking URI "
            "(--mlflow or MLFLOW_TRACKING_URI) to register the winner in"
        )
    if not config.mlflow:
        return None
    from nas.tracking import MLflowTracker

    return MLflowTracker.connect(config.mlflow, config.mlflow_experiment, config.mlflow_register)


def _new(config: SearchConfig) -> tuple[RunDir, SearchConfig, SearchSpace, None]:
    space = load_space(config.space)
    failure_reward_setting(space)  # checked here, before anything starts
    training = space.fixed["training"]
    config = replace(
        config,
        epochs=config.epochs or training["search_epochs"],
        final_epochs=config.final_epochs or training["final_epochs"],
        ensemble=config.ensemble or training["ensemble"],
        name=f"{space.name}-{datetime.now():%Y%m%d-%H%M%S}" if config.name is None else config.name,
    )
    config = replace(
        config, scheduler=config.scheduler or _space_scheduler(config, training), budget=_budget(config, space)
    )
    if config.strategy != "enas":  # before the data loads, which may take minutes for a large folder
        controller_settings(config.controller, space, budget=config.budget)
    if (space.family == "transfer") != bool(config.base):
        raise InputError(
            f"base: space {space.name!r} is a transfer space, expected --base PATH, a trained .keras "
            "model its children build on, or --base keras:NAME, a pretrained Keras Application"
            if space.family == "transfer"
            else f"base: given for space {space.name!r} of family {space.family}, expected a transfer space"
        )
    if applications.is_application(config.base):
        applications.parse(config.base)
    elif config.base:
        transfer.check_base_file(config.base)
    rundir = _rundir(config)
    rundir.check_new()
    return rundir, config, space, None


def _budget(config: SearchConfig, space: SearchSpace) -> int:
    """The children trained from scratch: as given, else 200 for a standalone search and the space's
    weight_sharing.finalists for an enas search, whose settings are checked here."""
    if config.strategy != "enas":
        return config.budget or STANDALONE_BUDGET
    from nas import supernet

    problem = supernet.supported(space)
    if problem:
        raise InputError(f"strategy: enas needs a supernet, but {problem}")
    if config.controller not in enas.CONTROLLERS:
        raise InputError(
            f"controller: got {config.controller!r} with --strategy enas, expected "
            f"{' or '.join(enas.CONTROLLERS)} (the supernet's paths are sampled as it trains)"
        )
    if config.tpu:
        raise InputError("tpu: the supernet does not train on TPUs yet, expected --strategy standalone with it")
    settings = enas.read_settings(space)
    if config.budget and config.budget > settings.candidates:
        raise InputError(
            f"budget: got {config.budget} finalists, expected at most the {settings.candidates} "
            f"candidates of {space.source}'s weight_sharing.candidates"
        )
    return config.budget or settings.finalists


def _enas_settings(config: SearchConfig, space: SearchSpace) -> enas.EnasSettings:
    return enas.read_settings(space, {"finalists": config.budget})


def _space_scheduler(config: SearchConfig, training: dict[str, Any]) -> str:
    """The space's scheduler where it can work: a space's `scheduler: asha` gives way to fifo when a
    child trains no more epochs than the grace period (ASHA could stop none) or when the objective
    needs every child's latency, measured after its last epoch. Given as --scheduler asha, either
    is an error instead (`_check_scheduler`). An enas search's few finalists all train to the end:
    they are compared trained from scratch, and with the supernet's ranking."""
    if (
        training.get("scheduler", "fifo") == "asha"
        and config.grace_period < config.epochs
        and not config.objective.endswith("-latency")
        and config.strategy != "enas"
    ):
        return "asha"
    return "fifo"


def _check_scheduler(config: SearchConfig) -> None:
    if config.scheduler != "asha":
        return
    if config.grace_period >= config.epochs:
        raise InputError(
            f"grace_period: got {config.grace_period}, expected fewer than the {config.epochs} epochs "
            "a child trains (--epochs), or ASHA could stop no child"
        )
    if config.objective.endswith("-latency"):
        raise InputError(
            "scheduler: asha stops children before their latency is measured, expected an --objective "
            "without -latency with it"
        )


def _base(config: SearchConfig, space: SearchSpace, data: Dataset, rundir: RunDir, saved: dict | None) -> bytes | None:
    """A transfer space's base model: the file --base names, checked against the data; on resume,
    the run's own copy (base.keras), which the first session wrote with config.json."""
    if space.family != "transfer":
        return None
    if saved is None and applications.is_application(config.base):
        shape = "x".join(map(str, data.input_shape))
        progress.reporter().line(f"Building the base {config.base} for {shape} images ...")
        return applications.application_base(config.base, data.input_shape)
    if saved is None:
        return transfer.read_base(config.base, data.input_shape)
    copy = rundir.file(BASE_FILE)
    if not copy.is_file():
        raise InputError(f"{copy}: missing; expected the run's copy of its --base model")
    return transfer.read_base(copy, data.input_shape)


def _resumed(config: SearchConfig, given: Collection[str]) -> tuple[RunDir, SearchConfig, SearchSpace, dict]:
    if not config.name:
        raise InputError("resume: needs --name, the run to continue")
    rundir = _rundir(config)
    rundir.check_existing()
    rundir.lock()
    try:
        saved = read_config(rundir, required=("space", "data", "seed", "space_fingerprint"))
        previous = SearchConfig.from_json(saved)
        for key in given:
            if key not in SearchConfig.RESUMABLE and getattr(config, key) != getattr(previous, key):
                flag = "--" + key.replace("_", "-")
                raise InputError(
                    f"{key}: run {rundir.name!r} was started with {getattr(previous, key)!r}, got "
                    f"{getattr(config, key)!r}; expected the same value or no {flag} (a resumed search "
                    f"may change only {', '.join('--' + k.replace('_', '-') for k in SearchConfig.RESUMABLE)})"
                )
        config = replace(
            previous,
            name=config.name,
            runs_dir=config.runs_dir,
            **{k: getattr(config, k) for k in given if k in SearchConfig.RESUMABLE},
        )
        space = read_space(rundir, saved)
        finished = read_trials(rundir, space=space)  # checked before Ray starts; Search.resume reads them again
        summary = read_summary(rundir)
        if summary and summary["status"] == "finished" and len(finished) >= config.budget:
            returned = len((summary.get("final") or {}).get("members") or [None])  # models it averaged
            if "ensemble" not in given or ensemble_size(config, space) == returned:
                raise InputError(
                    f"resume: run {rundir.name!r} has finished its {config.budget} trials; expected an "
                    "unfinished run, a larger --budget to search further, or another --ensemble to retrain "
                    "its final model"
                )
    except BaseException:
        rundir.unlock()
        raise
    return rundir, config, space, saved


def ensemble_size(config: SearchConfig, space: SearchSpace) -> int:
    """How many of the best children the search returns averaged: --ensemble, else the space's
    training.ensemble (a run from before ensembles has none in its config.json; its space.yaml, 1)."""
    return config.ensemble or space.fixed["training"]["ensemble"]


MAX_NAME_BYTES = 255  # a file name's length on Linux, macOS and Windows file systems


def _rundir(config: SearchConfig) -> RunDir:
    if not config.name:
        raise InputError("name: got an empty name, expected letters, digits, '-', '_' or '.' (or no name)")
    if not all(c.isalnum() or c in "-_." for c in config.name) or config.name.startswith("."):
        raise InputError(f"name: got {config.name!r}, expected letters, digits, '-', '_' or '.'")
    longest = MAX_NAME_BYTES - len(".XX.12345678")  # the file system's limit, less the staging name's additions
    if len(config.name.encode()) > longest:
        raise InputError(
            f"name: got {len(config.name.encode())} bytes ({config.name[:20]}...), expected at most {longest}, "
            "as the file system allows"
        )
    return RunDir(Path(config.runs_dir) / config.name)


def _run(
    config: SearchConfig,
    space: SearchSpace,
    data: Dataset,
    fingerprint: str,
    controller,
    objective: Objective,
    rundir: RunDir,
    saved: dict | None,
    base: bytes | None,
    plan: accelerators.Plan,
    files: dict[str, bytes],
    tracker=None,
) -> dict[str, Any]:
    from nas import cluster as ray_cluster  # Ray is imported only once the input is known to be good

    resources = ray_cluster.Resources(
        cpus=config.cpus_per_trial, gpus=config.gpus_per_trial, tpus=1 if config.tpu else 0
    )
    cluster = ray_cluster.connect(config.address, config.dashboard, verbose=config.verbose)
    try:
        ray_cluster.check_resources(cluster, resources)
        config = replace(config, workers=config.workers or ray_cluster.default_workers(cluster, resources))
        if config.strategy == "enas":  # the settings of the controller that learns on the supernet
            settings = _enas_settings(config, space)
            strategy = {
                "controller_settings": enas.controller_settings(config.controller, space, settings),
                "weight_sharing": dataclasses.asdict(settings),
            }
        else:
            strategy = {"controller_settings": controller.settings_json()}
        resolved = {
            **config.to_json(),
            "space_file": space.source,
            "space_fingerprint": space.fingerprint(),
            "space_size": space.describe_size(),
            "data_summary": data.describe(),
            # unreadable images of a folder or CSV, skipped as they were decoded ([{file, reason}])
            "skipped_images": data.preprocessing.get("skipped", []),
            "class_names": data.class_names,
            "data_fingerprint": fingerprint,
            "training": space.fixed["training"],
            **strategy,
            "reward": objective.describe(),
            "accelerator": plan.to_json(),
            "ray_resources": {k: v for k, v in cluster.resources.items() if k in ("CPU", "GPU", "TPU")},
            "dashboard_url": cluster.dashboard_url,
            "started": datetime.now().isoformat(timespec="seconds"),
        }
        # A resumed search's files are checked (and a torn line repaired) before config.json notes the resume.
        printer = progress.TrialPrinter(config.budget, running=lambda: len(search.running))
        make = Search.resume if saved else Search
        search = make(
            space,
            controller,
            rundir,
            config.budget,
            max_failures=config.max_failures,
            on_record=printer,
            objective=objective,
            time_budget=config.time_budget,
        )
        if saved is None:
            rundir.create({"config.json": rundir.json_text(resolved), "space.yaml": space.text, **files})
            rundir.lock()
        else:
            earlier = saved.get("resumes") if isinstance(saved.get("resumes"), list) else []
            resolved.update(
                space_file=saved.get("space_file", space.source),
                started=saved.get("started"),
                resumes=[
                    *earlier,
                    {"at": datetime.now().isoformat(timespec="seconds"), "trials_finished": len(search.records)},
                ],
            )
            rundir.write_json("config.json", resolved)
        tensorboard = TensorBoardLog(rundir.file("tensorboard"), space, controller)
        if tracker:
            tracker.start(rundir, resolved, search.records)
        search.on_record = _monitor(printer, tensorboard, tracker)
        progress.reporter().line(f"[bold]nas search[/bold] {rundir.path}{' (resumed)' if saved else ''}")
        progress.print_settings({k: v for k, v in resolved.items() if k != "class_names"})  # in data_summary
        if cluster.dashboard_url:
            progress.reporter().line(f"Ray dashboard: {cluster.dashboard_url}")
        # The winner's retraining gets the CPUs of all workers (and one trial's accelerators).
        final_resources = ray_cluster.Resources(
            cpus=min(config.cpus_per_trial * config.workers, cluster.largest_node_cpus),
            gpus=resources.gpus,
            tpus=resources.tpus,
        )
        final_here = cluster.address is None and not resources.gpus and not resources.tpus
        job = Job(
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            epochs=config.epochs,
            seed=config.seed,
            cpus=resources.cpus,
            base=base,
            plan=plan,
            trial_timeout=config.trial_timeout,
            class_names=tuple(data.class_names),
            per_class=objective.per_class,
            class_weight=config.class_weight,
            class_counts=tuple(int(n) for n in data.class_counts()),
        )
        try:
            return _search(
                config,
                space,
                data,
                search,
                printer,
                tensorboard,
                rundir,
                job,
                resources,
                final_resources,
                resume=saved is not None,
                final_here=final_here,
                tracker=tracker,
            )
        finally:
            if tracker:  # from summary.json, whichever way the search ended
                tracker.end(rundir)
    finally:
        ray_cluster.disconnect(cluster)


def _monitor(printer: progress.TrialPrinter, tensorboard: TensorBoardLog, tracker=None):
    """What happens as each trial is recorded: its line on the console, its TensorBoard log, its
    MLflow run (which catches its own failures)."""

    def on_record(record: TrialRecord) -> None:
        printer(record)
        try:
            tensorboard.finished(record)
        except Exception as e:  # monitoring must never stop a search
            progress.reporter().line(f"[yellow]TensorBoard log of trial {record.trial} failed: {e}[/yellow]")
        if tracker:
            tracker.finished(record)

    return on_record


def _on_epoch(tensorboard: TensorBoardLog, tracker=None):
    def on_epoch(trial, result: dict[str, Any]) -> None:
        tensorboard.epoch(trial, result)
        if tracker:
            tracker.epoch(trial, result)

    return on_epoch


def _search(
    config: SearchConfig,
    space,
    data,
    search: Search,
    printer: progress.TrialPrinter,
    tensorboard: TensorBoardLog,
    rundir: RunDir,
    job: Job,
    resources,
    final_resources,
    resume: bool,
    final_here: bool = False,
    tracker=None,
) -> dict[str, Any]:
    """The trials (after an enas search's supernet phase), then the winner's retraining: `job` is how
    every child trains, `resources` what each asks of Ray, `final_resources` what the winner's
    retraining asks (in this process when `final_here`)."""
    from nas import tune

    printer.resume(search.records)
    if search.rerun:
        progress.reporter().line(
            f"Resuming after {len(search.records)} finished trials; running again "
            f"{', '.join(str(t.number) for t in search.rerun)}, which the last run left unfinished"
        )
    elif resume:
        progress.reporter().line(f"Resuming after {len(search.records)} finished trials")
    start, phase_seconds = time.perf_counter(), 0.0
    try:
        if config.strategy == "enas" and not search.controller.architectures:
            try:
                monitors = [m for m in (tensorboard, tracker) if m is not None]
                finalists = _supernet_phase(config, space, data, rundir, final_resources, final_here, monitors)
            except SearchStopped:
                _write_summary(rundir, config, search, time.perf_counter() - start, status="stopped")
                raise
            search.controller.give([arch for arch, _ in finalists])
            phase_seconds = time.perf_counter() - start
            start = time.perf_counter()  # the trials' time, and the engine's overhead, from here
        if not search.finished:
            with printer.live():
                tune.run_trials(
                    search,
                    data.search_arrays(),
                    job,
                    resources=resources,
                    workers=config.workers,
                    worker_memory_growth=config.worker_memory_growth,
                    storage=str(rundir.path),
                    on_epoch=_on_epoch(tensorboard, tracker),
                    verbose=config.verbose,
                    asha={"grace_period": config.grace_period, "reduction_factor": config.reduction_factor}
                    if config.scheduler == "asha"
                    else None,
                )
    except KeyboardInterrupt:
        _write_summary(rundir, config, search, time.perf_counter() - start, status="interrupted")
        raise SearchInterrupted(
            f"interrupted after {len(search.records)} finished trials, which are kept in "
            f"{rundir.path}; continue with: {_resume_command(rundir)}"
        ) from None
    finally:
        tensorboard.close()
    search_seconds = time.perf_counter() - start
    if search.stopped:
        _write_summary(rundir, config, search, search_seconds, status="stopped")
        raise SearchStopped(
            f"{search.stopped}. What finished is in {rundir.path}; fix the cause, then continue "
            f"with: {_resume_command(rundir)}"
        )
    best = search.best()
    if best is None:
        _write_summary(rundir, config, search, search_seconds, status="failed")
        raise SearchStopped(
            f"no child trained successfully ({len(search.failed)} failed); see {rundir.file('trials.jsonl')}"
        )
    if search.ended_by:
        progress.reporter().line(f"The search asked for no more children: {search.ended_by}.")
    members = top_trials(search.records, ensemble_size(config, space))
    which = (
        f"trial {best.trial}"
        if len(members) == 1
        else f"the best {len(members)} children (trials {', '.join(str(r.trial) for r in members)})"
    )
    at_once = " at once" if len(members) > 1 else ""
    progress.reporter().line(f"Retraining {which}{at_once} on train + validation for {config.final_epochs} epochs ...")
    try:
        final_job = replace(
            job,
            epochs=config.final_epochs,
            cpus=final_resources.cpus,
            trial_timeout=None,
            class_counts=tuple(int(n) for n in data.class_counts(final=True)),
        )
        final_arrays = data.final_arrays()
        trained = tune.train_final(
            [space.resolve(space.from_json(r.arch)) for r in members],
            final_arrays,
            final_job,
            resources=final_resources,
            here=final_here,
        )
        if len(trained) == 1:
            ((model_bytes, final),) = trained
        else:
            for record, (_, metrics) in zip(members, trained, strict=True):
                metrics["trial"] = record.trial
                progress.reporter().line(f"  trial {record.trial}: test accuracy {metrics['test_accuracy']:.4f}")
            try:
                model_bytes, final = ensemble.combine(
                    [b for b, _ in trained],
                    [m for _, m in trained],
                    f"{space.name}_ensemble",
                    final_arrays["x_test"],
                    final_arrays.get("y_test"),
                    list(data.class_names),
                )
            except Exception as e:  # Keras, or memory: in one line, as a member's failure is
                raise RuntimeError(f"averaging the members failed: {one_line(e)}") from None
    except KeyboardInterrupt:
        _write_summary(rundir, config, search, search_seconds, status="interrupted")
        raise SearchInterrupted(
            f"interrupted while retraining the winner; {_resume_command(rundir)} retrains it"
        ) from None
    except RuntimeError as e:
        _write_summary(rundir, config, search, search_seconds, status="stopped")
        raise SearchStopped(f"retraining {which} failed: {e}; {_resume_command(rundir)} tries again") from None
    rundir.write_bytes("best/model.keras", model_bytes)
    summary = _write_summary(
        rundir,
        config,
        search,
        search_seconds,
        status="finished",
        final=final,
        wall_seconds=time.perf_counter() - start + phase_seconds,
        phase_seconds=phase_seconds,
    )
    progress.print_top(search.records, final["test_accuracy"], ensemble=[r.trial for r in members])
    overhead = summary["engine_overhead"]
    progress.reporter().line(
        f"search {progress.duration(search_seconds)}"
        f"{f' (engine overhead {overhead:.1%})' if overhead is not None else ''}, final training "
        f"{progress.duration(final['fit_seconds'])}; results in {rundir.path}"
    )
    return summary


def _supernet_phase(config: SearchConfig, space, data, rundir: RunDir, resources, here: bool, monitors=()):
    """The finalists of an enas search: from the run's supernet/finalists.json, or from the supernet
    phase (resumed from its checkpoint), which gets the CPUs of all workers and one trial's GPUs.
    Each epoch goes to the status line and to `monitors` (TensorBoard, MLflow)."""
    finalists = enas.read_finalists(space, rundir)
    if finalists is not None:
        return finalists
    settings = _enas_settings(config, space)
    progress.reporter().line(
        f"Training the supernet for {settings.supernet_epochs} epochs, then scoring "
        f"{settings.candidates} candidates with shared weights for {settings.finalists} "
        "finalists ..."
    )

    def on_epoch(record: dict[str, Any]) -> None:
        entropy = f", entropy {record['entropy']:.2f}" if record.get("entropy") is not None else ""
        progress.reporter().line(
            f"\\[supernet {record['epoch']}/{settings.supernet_epochs}] loss {record['loss']:.3f}, "
            f"reward {record['reward_mean']:.4f} (best {record['reward_max']:.4f}){entropy}, "
            f"{progress.duration(record['train_seconds'] + record['controller_seconds'])}"
        )
        for monitor in monitors:
            monitor.supernet_epoch(record)

    try:
        finalists = enas.search_supernet(
            space,
            rundir,
            data.search_arrays(),
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            controller=config.controller,
            seed=config.seed,
            finalists=settings.finalists,
            cpus=resources.cpus,
            gpus=resources.gpus,
            here=here,
            on_epoch=on_epoch,
        )
    except enas.CheckpointMismatch as e:
        raise InputError(f"{rundir.file(enas.CHECKPOINT)}: {e}; expected the checkpoint this run wrote") from None
    except enas.SupernetDiverged as e:
        raise SearchStopped(f"{e}; the last epoch's checkpoint is kept in {rundir.file(enas.CHECKPOINT)}") from None
    except RuntimeError as e:  # the Ray actor's death or an error inside it, in one line
        raise SearchStopped(
            f"the supernet phase failed: {e}; {_resume_command(rundir)} goes on from its last checkpoint"
        ) from None
    for rank, (_, accuracy) in enumerate(finalists, 1):
        progress.reporter().line(f"  finalist {rank}: shared-weight validation accuracy {accuracy:.4f}")
    return finalists


def _resume_command(rundir: RunDir) -> str:
    return f"nas search --name {rundir.name} --runs-dir {rundir.path.parent} --resume"


def _write_summary(
    rundir: RunDir,
    config: SearchConfig,
    search: Search,
    search_seconds: float,
    *,
    status: str,
    final: dict | None = None,
    wall_seconds: float | None = None,
    phase_seconds: float | None = None,
) -> dict[str, Any]:
    """The outcome. Counts and the best are the whole run's; seconds and the engine overhead are this
    session's (a resumed search's earlier sessions are listed in config.json's `resumes`)."""
    session = search.records[search.resumed_with :]
    fit_seconds = sum(r.metrics.fit_seconds for r in session if not r.failed)
    best = search.best()
    summary = {
        "space": search.space.name,
        "budget": config.budget,
        "controller": config.controller,
        "status": status,
        "trials_completed": len(search.completed),
        "trials_stopped_early": len(search.stopped_early),
        "trials_failed": len(search.failed),
        "duplicates_skipped": search.duplicates,
        # why it asked for no more children before its budget (--time-budget, say), or None
        "ended_by": search.ended_by,
        "best": best
        and {
            "trial": best.trial,
            "arch": best.arch,
            "values": best.values,
            "val_accuracy": best.metrics.val_accuracy,
            "reward": best.reward,
            "params": best.metrics.params,
            "latency_ms": best.metrics.latency_ms,
        },
        "test_accuracy": final and final["test_accuracy"],
        # the winner's test split per class, its confusion matrix (nas.evaluation)
        "evaluation": final and final.get("evaluation"),
        "final": final and {k: v for k, v in final.items() if k != "evaluation"},
        "workers": config.workers,
        "session_trials": len(session),
        "search_wall_seconds": search_seconds,
        "child_fit_seconds": fit_seconds,
        "engine_overhead": 1 - fit_seconds / (config.workers * search_seconds) if session else None,
        "wall_seconds": wall_seconds or search_seconds,
        "strategy": config.strategy,
    }
    if config.strategy == "enas":  # wall_seconds includes this session's supernet phase, if it ran one
        summary["supernet"] = enas.finalists_summary(search.space, rundir, search.records)
        summary["supernet_session_seconds"] = phase_seconds
    rundir.write_json("summary.json", summary)
    _write_report(rundir, status)
    return summary


def _write_report(rundir: RunDir, status: str) -> None:
    """RUN/report.html (nas.report), with the search's status (its lock, still held, would read as
    running). A report that cannot be written costs a warning, never the search."""
    from rich.markup import escape

    try:
        from nas.report import write_report

        progress.reporter().line(f"Report: {escape(str(write_report(rundir.path, status=status)))}")
    except Exception as e:  # noqa: BLE001 - the search's results are on disk whatever goes wrong here
        reason = escape(f"{type(e).__name__}: {e}")
        progress.reporter().warning(f"{rundir.file('report.html')} not written: {reason}")
