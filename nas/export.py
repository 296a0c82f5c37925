"""`nas export`: a run's winner, or any of its completed trials, as a model directory (`nas.model_dir`).

    out = export_run("runs/cnn10-20250101-120000")              # the best trial -> RUN/export/
    out = export_run("cnn10-1", trial=3, formats="python,keras,savedmodel,tflite", out="trial3/")

What is written (`keras` is always: every other format derives from it):

    python       model.py: plain Keras code building the model (`nas.codegen`), no nas needed
    keras        model.keras, model.weights.h5, labels.json, metadata.json (`write_model_dir`)
    savedmodel   saved_model/: `model.export()`, for TensorFlow Serving and tf.saved_model.load
    tflite       model.tflite: LiteRT (TensorFlow Lite), converted by `model.export(format="litert")`
    onnx         model.onnx: ONNX, converted by tf2onnx and checked with onnxruntime on the run's test
                 images (`nas.onnx_export`; pip install 'nas[onnx]')

The best trial's model is the run's `best/model.keras`, the winner retrained on train + validation.
Another trial (or the best one of a run that stopped before retraining it) is retrained here as the
engine retrains a winner: `nas.trainer.train_final` on the run's data, reloaded from config.json and
checked against the run's data fingerprint. Every input is checked before anything is trained or
written; the files are written into a hidden folder beside --out and renamed into place when all
are complete, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from nas.errors import InputError
from nas.progress import reporter
from nas.run import BASE_FILE, Run, find_run, read_run
from nas.rundir import RunDir
from nas.trial_record import TrialRecord
from search_spaces import Architecture, SearchSpace

FORMATS = ("python", "keras", "savedmodel", "tflite", "onnx")
DEFAULT_FORMATS = "python,keras"


@dataclass
class ExportPlan:
    """Everything `nas export` checked before it loads TensorFlow: the run, the trial and where to write."""

    run: str  # the run as the user named it (a path or a name under --runs-dir), for messages
    rundir: RunDir
    config: dict[str, Any]
    space: SearchSpace
    record: TrialRecord  # the trial's line of trials.jsonl
    arch: Architecture
    best_trial: int
    out: Path
    formats: list[str]
    members: list[TrialRecord]  # for the best trial of a search that returned an ensemble: its members (nas.ensemble)
    # summary.json records the final training of today's best trial, so best/model.keras is its model
    # (not one a session before a resumed one left)
    retrained_by_search: bool

    @property
    def trial(self) -> int:
        return self.record.trial

    @property
    def ensemble(self) -> list[int]:
        """The trials of the ensemble exported, best first; [] for a single model."""
        return [r.trial for r in self.members]

    @property
    def is_best(self) -> bool:
        return self.trial == self.best_trial

    @property
    def val_accuracy(self) -> float:
        """The trial's validation accuracy (its reward, unless the search weighed in a cost)."""
        return self.record.metrics.val_accuracy


def parse_formats(text: str) -> list[str]:
    """`python,tflite` -> ["python", "keras", "tflite"] (keras always, in FORMATS order); InputError else."""
    given = [f.strip().lower() for f in text.split(",") if f.strip()]
    for name in given:
        if name not in FORMATS:
            raise InputError(f"format: got {name!r}, expected a comma-separated list of {', '.join(FORMATS)}")
    if not given:
        raise InputError(f"format: got {text!r}, expected a comma-separated list of {', '.join(FORMATS)}")
    if "onnx" in given:
        from nas.onnx_export import check_installed

        check_installed()
    return [f for f in FORMATS if f in given or f == "keras"]


def plan_export(
    run: str,
    trial: int | None = None,
    formats: str = DEFAULT_FORMATS,
    out: str | Path | None = None,
    runs_dir: str | Path = "runs",
) -> ExportPlan:
    """Checks the request against the run directory (no TensorFlow); one-line InputError for bad input."""
    chosen = parse_formats(formats)
    checked = read_run(find_run(run, runs_dir), required=("space", "data", "seed", "final_epochs"), architectures=True)
    rundir, space, completed = checked.rundir, checked.space(), checked.completed
    if not completed:
        raise InputError(f"{run}: no completed trial to export, expected a run with at least one completed trial")
    best = _best_trial(checked)
    number = best if trial is None else trial
    record = next((r for r in checked.trials if r.trial == number), None)
    if record is None:
        raise InputError(
            f"trial: got {number}, expected a completed trial of run {rundir.name!r} "
            f"({_numbers(completed)}; the best is {best})"
        )
    if not record.completed:
        why = "stopped early" if record.status == "stopped" else f"failed ({record.error})"
        raise InputError(
            f"trial: trial {number} of run {rundir.name!r} {why}, expected "
            f"a completed trial ({_numbers(completed)}; the best is {best})"
        )
    arch = space.from_json(record.arch)
    if out is None:
        out = rundir.path / ("export" if number == best else f"export-trial-{number}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is not a folder" if not out.is_dir() else "exists and is not empty"
        raise InputError(f"out: {out} {what}, expected a new or empty folder (or another --out)")
    ensemble = checked.ensemble if number == best else []
    members = [next(r for r in completed if r.trial == trial) for trial in ensemble]
    return ExportPlan(
        run, rundir, checked.config, space, record, arch, best, out, chosen, members, checked.test_accuracy is not None
    )


def export_run(
    run: str,
    trial: int | None = None,
    formats: str = DEFAULT_FORMATS,
    out: str | Path | None = None,
    runs_dir: str | Path = "runs",
) -> Path:
    """Exports a trial of a run (default: the best) into `out` (default: RUN/export or RUN/export-trial-N)."""
    plan = plan_export(run, trial, formats, out, runs_dir)
    from nas.quiet import import_tensorflow

    import_tensorflow()
    data = _load_run_data(plan)
    model, metrics, how = _model(plan, data)
    about = _metadata(plan, data, metrics, how)
    _write(plan, model, data.class_names, about, data.x_test)
    _report(plan, metrics)
    return plan.out


# -- the run and its trial ----------------------------------------------------------------------------


def _best_trial(run: Run) -> int:
    """summary.json's best, or (a run that stopped before writing it) the best completed trial."""
    numbers = {r.trial for r in run.completed}
    best = (run.summary or {}).get("best")
    if isinstance(best, dict) and best.get("trial") in numbers:
        return int(best["trial"])
    return run.best.trial


def _numbers(records: list[TrialRecord]) -> str:
    numbers = sorted(r.trial for r in records)
    shown = ", ".join(map(str, numbers[:10])) + (f" ... {numbers[-1]}" if len(numbers) > 10 else "")
    return f"completed: {shown}"


def _load_run_data(plan: ExportPlan):
    """The run's data, reloaded and split as the search split it; InputError if it is gone."""
    from nas.data import load_data

    config = plan.config
    try:
        return load_data(
            config["data"], config.get("image_size"), config.get("color_mode", "rgb"), seed=config["seed"], stream=False
        )
    except InputError as e:
        raise InputError(
            f"{plan.rundir.file('config.json')}: data: cannot reload the run's data "
            f"{config['data']!r} ({e}); expected it where the search read it (export needs its class "
            "names)"
        ) from None


# -- the model ----------------------------------------------------------------------------------------


def _model(plan: ExportPlan, data) -> tuple[Any, dict[str, Any], str]:
    """(the Keras model, its metrics, how it was made)."""
    from nas import evaluation

    saved = plan.rundir.file("best/model.keras")
    if plan.is_best and plan.retrained_by_search and saved.is_file():
        model = _load(saved)
        outputs = int(model.output_shape[-1])
        if outputs != data.num_classes or tuple(model.input_shape[1:]) != data.input_shape:
            raise InputError(
                f"{saved}: takes {tuple(model.input_shape[1:])} and gives {outputs} classes, but the "
                f"run's data {plan.config['data']!r} now has {data.input_shape} images of "
                f"{data.num_classes} classes; expected the data the search used"
            )
        from nas.ensemble import members

        if len(members(model)) != len(plan.ensemble):
            what = f"an ensemble of {len(plan.ensemble)}" if plan.ensemble else "a single model"
            raise InputError(
                f"{saved}: holds {len(members(model)) or 'no'} ensemble members, but summary.json says the "
                f"search returned {what}; expected the model nas search saved"
            )
        tested = evaluation.evaluate(*evaluation.predictions(model, data.x_test, data.y_test), data.class_names)
        how = (
            f"the search's ensemble of trials {', '.join(map(str, plan.ensemble))}, retrained on train + "
            "validation by nas search, their probabilities averaged (best/model.keras)"
            if plan.ensemble
            else "the search's winner, retrained on train + validation by nas search (best/model.keras)"
        )
        metrics = {"test_accuracy": tested["accuracy"], "params": int(model.count_params()), "evaluation": tested}
        return model, metrics, how

    from nas.dataset import data_fingerprint
    from nas.trainer import train_final

    saved_fingerprint = plan.config.get("data_fingerprint")
    if saved_fingerprint is not None and data_fingerprint(data) != saved_fingerprint:
        raise InputError(
            f"{plan.rundir.file('config.json')}: data_fingerprint: the run's data "
            f"{plan.config['data']!r} has changed since the search; expected the same images to "
            f"retrain trial {plan.trial}"
        )
    why = (
        ""
        if not plan.is_best
        else " (the run has no best/model.keras)"
        if not saved.is_file()
        else " (its best/model.keras is from before the last session, which did not retrain the winner)"
    )
    epochs = int(plan.config["final_epochs"])
    records = plan.members or [plan.record]
    which = f"trial {plan.trial}" if len(records) == 1 else f"trials {', '.join(str(r.trial) for r in records)}"
    reporter().text(
        f"Retraining {which}{why} on train + validation for {epochs} epochs, as the search retrains "
        f"{'its winner' if len(records) == 1 else 'the ensemble it returned'} ..."
    )
    if plan.space.family == "transfer":
        from nas import transfer

        transfer.provide(_base_file(plan).read_bytes())
    arrays, trained = data.final_arrays(), []
    for record in records:
        model, metrics = train_final(
            plan.space.resolve(plan.space.from_json(record.arch)),
            arrays,
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            epochs=epochs,
            seed=int(plan.config["seed"]),
            class_names=data.class_names,
            class_weight=plan.config.get("class_weight"),
        )
        reporter().text(f"Trial {record.trial} retrained: test accuracy {metrics['test_accuracy']:.4f}")
        trained.append((model, {**metrics, "trial": record.trial}))
    how = f"retrained by nas export on train + validation for {epochs} epochs (seed {plan.config['seed']})"
    if len(trained) == 1:
        return model, metrics, how
    model, metrics = _combined(plan, data, trained)
    reporter().text(f"Their ensemble: test accuracy {metrics['test_accuracy']:.4f}")
    return model, metrics, f"the ensemble of trials {', '.join(map(str, plan.ensemble))}, each {how}, averaged"


def _combined(plan: ExportPlan, data, trained: list) -> tuple[Any, dict[str, Any]]:
    """The members trained here as one ensemble, made as the search makes it (nas.ensemble.combine)."""
    from nas import ensemble

    with tempfile.TemporaryDirectory() as tmp:
        saved = []
        for rank, (model, _) in enumerate(trained, 1):
            path = Path(tmp) / f"{ensemble.member_name(rank)}.keras"
            model.save(path)
            saved.append(path.read_bytes())
        combined, metrics = ensemble.combine(
            saved,
            [m for _, m in trained],
            f"{plan.space.name}_ensemble",
            data.x_test,
            data.y_test,
            list(data.class_names),
        )
        path = Path(tmp) / "ensemble.keras"
        path.write_bytes(combined)
        return _load(path), metrics


def _base_file(plan: ExportPlan) -> Path:
    """A transfer run's copy of its base model."""

    path = plan.rundir.file(BASE_FILE)
    if not path.is_file():
        raise InputError(f"{path}: missing; expected the run's copy of its --base model")
    return path


def _load(path: Path):
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:
        raise InputError(
            f"{path}: not a loadable Keras model ({type(e).__name__}), expected the model nas search saved"
        ) from None


def _metadata(plan: ExportPlan, data, metrics: dict[str, Any], how: str) -> dict[str, Any]:
    from nas.model_dir import preprocessing_for

    spec = plan.space.resolve(plan.arch)
    config = plan.config
    return {
        "source": "nas export",
        "run": {"name": plan.rundir.name, "path": str(plan.rundir.path)},
        "trial": plan.trial,
        "best_trial": plan.best_trial,
        "model": how,
        "space": {
            "name": plan.space.name,
            "family": plan.space.family,
            "file": config.get("space_file"),
            "fingerprint": plan.space.fingerprint(),
        },
        "architecture": {
            "choices": list(plan.arch.choices),
            "hash": plan.arch.key,
            "values": plan.space.decode(plan.arch),
        },
        "spec": spec,
        "metrics": {
            "val_accuracy": plan.val_accuracy,
            "reward": plan.record.reward,
            "test_accuracy": float(metrics["test_accuracy"]),
            "test_images": int(len(data.y_test)),
            "params": int(metrics["params"]),
            "evaluation": metrics["evaluation"],  # per class, confusion matrix (nas.evaluation)
        },
        "training": {**spec["training"], "epochs": int(config["final_epochs"]), "seed": int(config["seed"])},
        "data": {
            "source": config["data"],
            "image_size": config.get("image_size"),
            "color_mode": config.get("color_mode", "rgb"),
            "seed": int(config["seed"]),
            "summary": data.describe(),
            "fingerprint": config.get("data_fingerprint"),
        },
        **({"ensemble": _ensemble_metadata(plan)} if plan.ensemble else {}),
        "preprocessing": preprocessing_for(data.input_shape),
        "formats": plan.formats,
        "nas_version": _version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _ensemble_metadata(plan: ExportPlan) -> dict[str, Any]:
    """The members of an exported ensemble, best first (`architecture` and `spec` above are the first's)."""
    members = []
    for record in plan.members:
        arch = plan.space.from_json(record.arch)
        members.append(
            {
                "trial": record.trial,
                "val_accuracy": record.metrics.val_accuracy,
                "architecture": {"choices": list(arch.choices), "hash": arch.key, "values": plan.space.decode(arch)},
                "spec": plan.space.resolve(arch),
            }
        )
    return {"trials": plan.ensemble, "combined": "the average of the members' class probabilities", "members": members}


def _version() -> str:
    try:
        return package_metadata.version("nas")
    except package_metadata.PackageNotFoundError:
        return "unknown"


# -- writing --------------------------------------------------------------------------------------------


def _write(plan: ExportPlan, model, class_names: Sequence[str], about: dict[str, Any], test_images) -> None:
    """Writes every format into a hidden folder beside --out, then renames it to --out. The ONNX file
    is checked on `test_images` first (what was checked goes into metadata.json)."""
    from nas.model_dir import write_model_dir

    out = plan.out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.incomplete-"))
    except OSError as e:
        raise InputError(f"out: {out}: cannot create it ({e.strerror}), expected a folder you can write to") from None
    try:
        staging.chmod(0o777 & ~_umask())
        if "onnx" in plan.formats:
            from nas.onnx_export import write_onnx
            from nas.quiet import stderr_silenced

            with stderr_silenced():
                about = {**about, "onnx": write_onnx(model, staging / "model.onnx", test_images)}
        write_model_dir(staging, model, class_names, about)
        if "python" in plan.formats:
            from nas.codegen import ensemble_source, model_source

            header = {
                "run": about["run"]["name"],
                "trial": plan.trial,
                "val_accuracy": about["metrics"]["val_accuracy"],
                "test_accuracy": about["metrics"]["test_accuracy"],
                "nas_version": about["nas_version"],
                "date": about["date"],
            }
            if plan.ensemble:
                specs = [m["spec"] for m in about["ensemble"]["members"]]
                source = ensemble_source(specs, plan.ensemble, model.input_shape[1:], class_names, header)
            else:
                source = model_source(about["spec"], model.input_shape[1:], class_names, header)
            (staging / "model.py").write_text(source)
            if about["spec"]["family"] == "transfer":  # model.py builds on it
                shutil.copyfile(_base_file(plan), staging / "base.keras")
        from nas.quiet import stderr_silenced

        with stderr_silenced():  # the converters log MLIR passes and SavedModel writes from C++
            if "savedmodel" in plan.formats:
                _export_saved_model(model, staging / "saved_model")
            if "tflite" in plan.formats:
                model.export(str(staging / "model.tflite"), format="litert", verbose=False)
        if out.is_dir():
            out.rmdir()  # empty (checked); the rename needs the name free
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _report(plan: ExportPlan, metrics: dict[str, Any]) -> None:
    which = "the best" if plan.is_best else f"the best is {plan.best_trial}"
    what = (
        f"the ensemble of trials {', '.join(map(str, plan.ensemble))} of run {plan.rundir.name} (the best "
        f"{len(plan.ensemble)}; test accuracy {metrics['test_accuracy']:.4f})"
        if plan.ensemble
        else f"trial {plan.trial} of run {plan.rundir.name} ({which}; validation accuracy "
        f"{plan.val_accuracy:.4f}, test accuracy {metrics['test_accuracy']:.4f})"
    )
    reporter().text(f"Exported {what} to {plan.out}")
    for path in sorted(plan.out.iterdir()):
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
        reporter().text(f"  {path.name + ('/' if path.is_dir() else ''):<20} {_size(size):>10}")


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def _export_saved_model(model, path: Path) -> None:
    """A SavedModel whose `serve` endpoint runs the model in inference mode. Keras's own
    `model.export()` serves `model.__call__`, in which its random augmentation layers are active (their
    `training` defaults to True): a model trained with augmentation would answer at random."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        lambda x: model(x, training=False),
        input_signature=[keras.InputSpec(shape=model.input_shape, dtype="float32")],
    )
    archive.write_out(str(path), verbose=False)
