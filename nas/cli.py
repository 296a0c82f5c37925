"""The `nas` command.

    nas search --space cnn10 --budget 200
    nas data prepare photos/ --out photos-64/ --image-size 64; nas search --data photos-64/
    nas spaces
    nas export runs/cnn10-1 --format python,keras,savedmodel,tflite
    nas train runs/cnn10-1/export --data more_photos/            # writes runs/cnn10-1/export/v2/
    nas evaluate runs/cnn10-1/export --data labelled_photos/     # per class, confusion matrix
    nas runs; nas show cnn10-1; nas report cnn10-1               # the run list, one run, its report.html

Bad input ends with one line on stderr (`nas: error: ...`) and exit code 2; a search that had to
stop exits with 3.
"""

from __future__ import annotations

import math
import re
import sys

import click

from controllers import NAMES as CONTROLLERS
from nas.config import SearchConfig, parse_duration
from nas.errors import MAX_SEED, USER_ERRORS, ExportFailed, InputError, SearchInterrupted, SearchStopped
from nas.objective import KINDS


class ImageSize(click.ParamType):
    """`64` or `64x48` (height x width)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            size = tuple(int(v) for v in str(value).lower().split("x"))
        except ValueError:
            size = ()
        if len(size) not in (1, 2) or min(size) < 1:
            self.fail(f"got {value!r}, expected a positive size such as 64 or 64x48", param, ctx)
        return size if len(size) == 2 else (size[0], size[0])


class Duration(click.ParamType):
    """`90` (seconds), `90s`, `30m`, `2h`, `1h30m`: seconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="nas", prog_name="nas")
def main() -> None:
    """nas: neural architecture search for image classification on Ray Tune."""


def _objective_options(command):
    """--objective and its targets, for nas search and nas bench run."""
    for option in reversed(
        [
            click.option(
                "--objective",
                type=click.Choice(KINDS),
                default="accuracy",
                show_default=True,
                help="The reward, measured on the validation split: accuracy, balanced-accuracy (the mean of the "
                "classes' recalls) or macro-f1; with -params or -latency, times (cost / target) ^ w as in MnasNet.",
            ),
            click.option(
                "--target-params",
                type=click.IntRange(min=1),
                metavar="N",
                help="The parameter count accuracy-params aims at.",
            ),
            click.option(
                "--target-latency-ms",
                type=click.FloatRange(min=0, min_open=True),
                metavar="MS",
                callback=lambda ctx, param, value: _finite(value, ctx, param),
                help="Milliseconds per image (batch of 1, on a worker) accuracy-latency aims at.",
            ),
            click.option(
                "--objective-weight",
                type=click.FloatRange(max=0),
                default=-0.07,
                show_default=True,
                metavar="W",
                callback=lambda ctx, param, value: _finite(value, ctx, param),
                help="w in accuracy x (cost / target) ^ w.",
            ),
        ]
    ):
        command = option(command)
    return command


@main.command()
@click.option(
    "--space", default="cnn10", show_default=True, help="A built-in space (see `nas spaces`) or a space file."
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    help="Child models to train from scratch: every child of a standalone search [default: 200]; the "
    "finalists of an enas search [default: the space's weight_sharing.finalists, 4].",
)
@click.option(
    "--strategy",
    type=click.Choice(["standalone", "enas"]),
    default="standalone",
    show_default=True,
    help="standalone: every child trains from scratch; enas: a weight-sharing supernet (conv spaces) "
    "scores thousands of children, and its finalists train from scratch.",
)
@click.option(
    "--data",
    default="mnist5k",
    show_default=True,
    help="mnist5k, digits, a folder with a sub-folder per class, a CSV of path,label, or an .npz of x, y.",
)
@click.option("--image-size", type=ImageSize(), help="Resize folder and CSV images to SIZE (default 32).")
@click.option(
    "--color-mode",
    type=click.Choice(["rgb", "grayscale"]),
    default="rgb",
    show_default=True,
    help="Channels of folder and CSV images.",
)
@click.option("--controller", type=click.Choice(CONTROLLERS), default="reinforce", show_default=True)
@click.option(
    "--base",
    metavar="PATH",
    help="For a transfer space: the trained model (.keras) its children build on, or a pretrained Keras "
    "Application, keras:NAME[:imagenet|none|WEIGHTS_FILE] (see `nas spaces transfer`).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Concurrent trials [default: CPUs / cpus-per-trial].")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--gpus-per-trial", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option(
    "--tpu",
    is_flag=False,
    flag_value="local",
    metavar="[NAME]",
    help="Train each child on a TPU (TPUStrategy, bfloat16), asking Ray for one TPU per trial; NAME is "
    "the TPU's name or address for TPUClusterResolver [default: local, a TPU VM host].",
)
@click.option(
    "--mixed-precision",
    type=click.Choice(["off", "float16", "bfloat16"]),
    help="Keras mixed precision for the children [default: bfloat16 with --tpu, else off].",
)
@click.option(
    "--address",
    help="Join the Ray cluster at this address (HOST:6379) instead of starting Ray locally; "
    "`local` starts a Ray of its own (on --resume: forgets the run's address).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per child [default: the space's search_epochs].")
@click.option("--final-epochs", type=click.IntRange(min=1), help="Epochs to retrain the winner [default: the space's].")
@click.option(
    "--ensemble",
    type=click.IntRange(min=1),
    metavar="N",
    help="Retrain the best N children at once and return the model averaging their probabilities; 1: the "
    "winner alone [default: the space's training.ensemble, 1 unless it says].",
)
@click.option("--name", help="Run name [default: <space>-<date>-<time>].")
@click.option("--runs-dir", default="runs", show_default=True, help="Where run directories are written.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--no-dashboard", is_flag=True, help="Do not start the Ray dashboard.")
@click.option("--verbose", is_flag=True, help="Show Ray Tune's status table and the workers' own logs.")
@click.option(
    "--time-budget",
    type=Duration(),
    help="Start no child that would likely end after this (90s, 30m, 2h, 1h30m; from the session's start); "
    "the best so far is retrained and tested as usual.",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Stop the search (exit code 3) after this many failed trials in a row.",
)
@click.option(
    "--trial-timeout",
    type=click.FloatRange(min=0, max=10**7, min_open=True),
    metavar="SECONDS",
    callback=lambda ctx, param, value: _finite(value, ctx, param),
    help="Stop and fail a child that runs longer than this.",
)
@click.option(
    "--worker-memory-growth",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    metavar="MB",
    help="Replace the worker processes once one has grown by this much (TensorFlow keeps every child's graphs).",
)
@_objective_options
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    help="balanced: weigh each class in the loss by its inverse frequency, for every child and the winner "
    "[default: the space's training.class_weight, none unless it says].",
)
@click.option(
    "--scheduler",
    type=click.Choice(["fifo", "asha"]),
    help="asha: Ray Tune's ASHAScheduler stops children whose validation accuracy trails at a rung.",
)
@click.option(
    "--grace-period",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="EPOCHS",
    help="ASHA: epochs every child trains before it may be stopped.",
)
@click.option(
    "--reduction-factor",
    type=click.IntRange(min=2),
    default=3,
    show_default=True,
    metavar="N",
    help="ASHA: 1 in N children goes on at each rung.",
)
@click.option(
    "--mlflow",
    metavar="URI",
    envvar="MLFLOW_TRACKING_URI",
    help="Log the search to this MLflow tracking server or store: a parent run, a nested run per child, the "
    "winner's metrics, report and model [default: $MLFLOW_TRACKING_URI; needs pip install 'nas[mlflow]'].",
)
@click.option(
    "--mlflow-experiment",
    metavar="NAME",
    envvar="MLFLOW_EXPERIMENT_NAME",
    default="nas",
    show_default=True,
    help="The MLflow experiment of the search's runs (created if new).",
)
@click.option(
    "--mlflow-register",
    metavar="NAME",
    help="Register the winner in MLflow's model registry under this name (a new version each search).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run --name where it stopped; its config.json gives every setting not passed.",
)
@click.pass_context
def search(ctx: click.Context, no_dashboard: bool, resume: bool, **options) -> None:
    """Search a space for the best child model, then retrain and test the winner."""
    from nas.engine import run_search

    given = {
        name
        for name in [*options, "no_dashboard"]
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    given = {"dashboard" if name == "no_dashboard" else name for name in given}
    try:
        run_search(
            SearchConfig(dashboard=not no_dashboard, **options), resume=resume, given=given - {"name", "runs_dir"}
        )
    except InputError as e:
        from_environment = ctx.get_parameter_source("mlflow") == click.core.ParameterSource.ENVIRONMENT
        if str(e).startswith("mlflow:") and from_environment:
            raise InputError(f"{e} (the URI is MLFLOW_TRACKING_URI's; --mlflow '' searches without MLflow)") from None
        raise


@main.command()
@click.argument("spaces", nargs=-1)
def spaces(spaces: tuple[str, ...]) -> None:
    """List the built-in spaces, or show the decisions of the given spaces (names or files)."""
    from rich.table import Table

    from nas.progress import reporter
    from search_spaces import builtin_names, load_space

    if not spaces:
        table = Table(title="Built-in search spaces", title_justify="left")
        for column in ("space", "family", "decisions", "architectures", "description"):
            table.add_column(column, justify="right" if column in ("decisions", "architectures") else "left")
        for name in builtin_names():
            space = load_space(name)
            table.add_row(name, space.family, str(len(space.decisions)), space.describe_size(), space.description)
        reporter().line(table)
        return
    for name in spaces:
        space = load_space(name)
        reporter().line(
            f"[bold]{space.name}[/bold] ({space.source}), family {space.family}: "
            f"{len(space.decisions)} decisions, {space.describe_size()} architectures"
        )
        for d in space.decisions:
            reporter().line(f"  {d.name:<28} {', '.join(map(str, d.choices))}")
        if space.family == "transfer":
            from nas.applications import listing

            reporter().line(listing())


@main.command()
@click.argument("run")
@click.option("--trial", type=click.IntRange(min=1), help="The trial to export [default: the run's best].")
@click.option(
    "--format",
    "formats",
    default="python,keras",
    show_default=True,
    metavar="LIST",
    help="Comma-separated: python (model.py), keras (model.keras, weights, labels, metadata; always "
    "written), savedmodel (saved_model/), tflite (model.tflite), onnx (model.onnx, checked with onnxruntime).",
)
@click.option("--out", help="A new or empty folder [default: RUN/export, or RUN/export-trial-N].")
@click.option("--runs-dir", default="runs", show_default=True, help="Where to look for RUN given as a name.")
def export(run: str, trial: int | None, formats: str, out: str | None, runs_dir: str) -> None:
    """Export a run's best model (or trial N's) as a model directory: model.py, Keras, SavedModel, TFLite, ONNX.

    RUN is a run directory or a run's name under --runs-dir. A trial other than the best is retrained
    (on train + validation, as the search retrains its winner) from the run's data."""
    from nas.export import export_run

    export_run(run, trial=trial, formats=formats, out=out, runs_dir=runs_dir)


@main.command()
@click.argument("model_dir")
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGE_OR_FOLDER...")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Labels per image.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON document on stdout: [{image, labels: [{label, probability}]}]."
)
def predict(model_dir: str, inputs: tuple[str, ...], top_k: int, as_json: bool) -> None:
    """Label images (files, or folders walked for image files) with a model directory from `nas export`.

    An input that cannot be read gets one error line on stderr, the others are still labelled, and
    the exit code is 2."""
    import json

    from nas.predict import Predictor, image_files

    predictor = Predictor(model_dir)
    files, errors = image_files(inputs)
    for _, message in errors:
        _fail(message, 2)
    results = []
    for result in predictor.label_files(files, k=top_k):
        if "error" in result:
            _fail(result["error"], 2)
            errors.append(result)
        elif as_json:
            results.append(result)
        else:
            labels = "  ".join(f"{x['label']} {x['probability']:.1%}" for x in result["labels"])
            click.echo(f"{result['image']}  {labels}")
    if as_json:
        click.echo(json.dumps(results, indent=1))
    if errors:
        raise click.exceptions.Exit(2)


@main.command()
@click.argument("model_dir")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Copies of the model, one CPU each, spread over the Ray cluster.",
)
@click.option("--address", help="Join the Ray cluster at this address (HOST:6379) instead of starting Ray locally.")
def serve(model_dir: str, host: str, port: int, replicas: int, address: str | None) -> None:
    """Serve a model directory from `nas export` over HTTP on Ray Serve, until Ctrl-C.

    POST an image (the raw body, or files in a multipart form) to /predict?top_k=3 for its labels as
    JSON; GET /health tells that the replicas are up."""
    from nas.serve import serve_model

    serve_model(model_dir, host=host, port=port, replicas=replicas, address=address)


@main.command()
@click.argument("model_dir")
@click.option(
    "--data",
    required=True,
    help="As for nas search: digits, mnist5k, a folder with a sub-folder per class, a CSV of path,label, "
    "or an .npz of x, y; folders and CSVs are decoded with the model's image size and colour mode.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Epochs in all. With --new-labels: 30 % (at least 1) train the new head with the body frozen, "
    "the rest fine-tune (all train the head with --freeze-base).",
)
@click.option(
    "--new-labels",
    is_flag=True,
    help="Transfer learning: keep the trained body, replace the head with one for the data's labels.",
)
@click.option("--freeze-base", is_flag=True, help="With --new-labels: train the new head only, no fine-tuning.")
@click.option(
    "--learning-rate",
    type=float,
    help="Learning rate (cosine decay within each phase) [default: a tenth of the model's own when "
    "training further; the model's own for a new head]. Fine-tuning uses 0.3x the head's.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=0,
    show_default=True,
    help="Seeds the data's split and the training.",
)
def train(
    model_dir: str, data: str, epochs: int, new_labels: bool, freeze_base: bool, learning_rate: float | None, seed: int
) -> None:
    """Train a model directory further on new images, or transfer it to new labels (--new-labels).

    Writes a new version beside MODEL_DIR and never overwrites: the exported directory is version 1,
    the first `nas train out/` writes out/v2/, the next out/v3/ (given out/v2 too). The data's test
    split is held out; test accuracy is printed before and after (after each phase with --new-labels).
    Without --new-labels, the data's labels must be among the model's (labels.json); a subset is fine."""
    from nas.retrain import retrain

    retrain(
        model_dir,
        data,
        epochs=epochs,
        new_labels=new_labels,
        freeze_base=freeze_base,
        learning_rate=learning_rate,
        seed=seed,
    )


@main.command()
@click.argument("model_dir")
@click.option(
    "--data",
    required=True,
    help="Labelled images, as for nas train: a folder with a sub-folder per class, a CSV of path,label, an .npz "
    "of x, y, a prepared directory, digits or mnist5k.",
)
@click.option(
    "--split",
    type=click.Choice(["all", "test"]),
    default="all",
    show_default=True,
    help="Every image of the data, or only the test split nas search holds out of it (with --seed).",
)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Seeds the split.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def evaluate(model_dir: str, data: str, split: str, seed: int, as_json: bool) -> None:
    """Evaluate a model directory from `nas export` on labelled images: accuracy, balanced accuracy,
    per-class precision, recall, F1 and support, the most confused pairs and the confusion matrix.

    The data's labels must be among the model's (labels.json); a subset is fine."""
    import json

    from nas.evaluation import evaluate_model_dir, text

    result = evaluate_model_dir(model_dir, data, split=split, seed=seed)
    click.echo(json.dumps(result, indent=1) if as_json else text(result))


@main.command()
@click.argument("run")
@click.option("--runs-dir", default="runs", show_default=True, help="Where to look for RUN given as a name.")
def report(run: str, runs_dir: str) -> None:
    """Write RUN/report.html (plots also in RUN/report/): rewards, controller, accuracy against size,
    the top 10 architectures, the winner's layers, its test accuracy and the settings.

    RUN is a run directory or a run's name under --runs-dir; it may be finished, interrupted or running."""
    from nas.report import write_report

    click.echo(f"report: {write_report(run, runs_dir=runs_dir)}")


@main.command()
@click.option("--runs-dir", default="runs", show_default=True, help="The folder holding the runs.")
def runs(runs_dir: str) -> None:
    """List the runs: space, trials done / budget, failed, best validation and test accuracy, status
    (running, finished, interrupted, stopped, failed, killed, damaged), start time."""
    from nas.runs import print_runs

    print_runs(runs_dir)


@main.command()
@click.argument("run")
@click.option("--runs-dir", default="runs", show_default=True, help="Where to look for RUN given as a name.")
def show(run: str, runs_dir: str) -> None:
    """Print a run's summary and its top 5 architectures."""
    from nas.runs import show_run

    show_run(run, runs_dir=runs_dir)


@main.group("data")
def data_group() -> None:
    """Image data prepared once into TFRecord files, which nas search reads fast or streams."""


@data_group.command("prepare")
@click.argument("source")
@click.option("--out", required=True, help="A new (or empty) folder for the shards and dataset.json.")
@click.option("--image-size", type=ImageSize(), help="Resize the images to SIZE (default 32).")
@click.option("--shards", type=click.IntRange(min=1), help="Files per split [default: about 100 MB each].")
@click.option("--color-mode", type=click.Choice(["rgb", "grayscale"]), default="rgb", show_default=True)
@click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=0,
    show_default=True,
    help="Seeds the split, made here once for every search on the output.",
)
@click.option(
    "--address",
    help="Decode on the Ray cluster at HOST:6379 with Ray Data (every node must read SOURCE at the same "
    "path); `local` starts a Ray of this machine's [default: tf.data in this process]. The files are the same.",
)
def data_prepare(
    source: str,
    out: str,
    image_size: tuple[int, int] | None,
    shards: int | None,
    color_mode: str,
    seed: int,
    address: str | None,
) -> None:
    """Decode SOURCE (a folder with a sub-folder per class, or a CSV of path,label) once into sharded
    TFRecord files in --out, split into train, validation and test as nas search splits a folder.

    `nas search --data OUT` then reads the images from the files, and streams them (tf.data, on the
    workers) when they would not fit in memory. An unreadable image is named on stderr, skipped and
    listed in OUT/dataset.json."""
    from nas.records import SPLITS, prepare

    info = prepare(source, out, image_size=image_size, shards=shards, color_mode=color_mode, seed=seed, address=address)
    h, w = info["image_size"]
    click.echo(
        f"{len(info['class_names'])} classes ({', '.join(info['class_names'][:10])}"
        f"{', ...' if len(info['class_names']) > 10 else ''}), {h}x{w}x{info['channels']} images"
    )
    for split in SPLITS:
        about = info["splits"][split]
        counts = ", ".join(f"{name} {n}" for name, n in list(about["class_counts"].items())[:10])
        click.echo(
            f"  {split:<10} {about['count']:>7} images in {len(about['files'])} file(s): {counts}"
            f"{', ...' if len(about['class_counts']) > 10 else ''}"
        )
    if info["skipped"]:
        click.echo(f"  skipped {len(info['skipped'])} unreadable image(s), listed in dataset.json")
    click.echo(f"wrote {out}")


@main.group()
def bench() -> None:
    """Tabular benchmarks: train every architecture of a small space, then replay controllers in seconds."""


@bench.command("build")
@click.option(
    "--space",
    required=True,
    help="A built-in space (such as bench_cnn) or a space file; at most a few thousand architectures.",
)
@click.option("--data", default="digits", show_default=True, help="As for nas search; split with seed 0.")
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Trainings of each architecture, seeded 0..N-1.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per child [default: the space's search_epochs].")
@click.option("--out", required=True, help="The table to write, NAME.json.gz (progress goes to NAME.progress.jsonl).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes training at once, one TensorFlow thread each.",
)
def bench_build(space: str, data: str, seeds: int, epochs: int | None, out: str, workers: int) -> None:
    """Train every architecture of SPACE once per seed and write a table of their accuracies.

    Each finished child is appended to the progress file at once, so a killed build continues where it
    stopped when run again with the same arguments."""
    from nas.bench import build_table
    from search_spaces import load_space

    loaded = load_space(space)
    build_table(
        loaded, out, data=data, seeds=seeds, epochs=epochs or loaded.fixed["training"]["search_epochs"], workers=workers
    )


@bench.command("run")
@click.option(
    "--table",
    "tables",
    required=True,
    multiple=True,
    help="A table's name (under benchmarks/tables/) or its path, or a synthetic NK landscape such as "
    "nk:n=8,c=4,k=2,noise=0.005,seed=0 (n decisions of c choices, k neighbours each); repeat for several.",
)
@click.option(
    "--controllers",
    default="random,reinforce,evolution",
    show_default=True,
    metavar="LIST",
    help=f"Comma-separated, from: {', '.join(CONTROLLERS)}.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=20, show_default=True, help="Runs per controller.")
@click.option("--budget", type=click.IntRange(min=1), default=100, show_default=True, help="Trials per run.")
@click.option(
    "--first-seed",
    type=click.IntRange(min=0, max=2**31 - 1),
    default=0,
    show_default=True,
    help="The runs are seeded first-seed, first-seed + 1, ...",
)
@click.option("--json", "json_path", metavar="FILE", help="Write the results as JSON.")
@click.option(
    "--plot",
    metavar="FILE",
    help="Write a PNG of the mean regret (the table's best test accuracy minus the best-so-far's) against trials.",
)
@click.option(
    "--space",
    help="A space file with the table's decisions whose controller: section configures the "
    "controllers [default: the table's copy of its space].",
)
@_objective_options
def bench_run(
    tables: tuple[str, ...],
    controllers: str,
    seeds: int,
    budget: int,
    first_seed: int,
    json_path: str | None,
    plot: str | None,
    space: str | None,
    objective: str,
    target_params: int | None,
    target_latency_ms: float | None,
    objective_weight: float,
) -> None:
    """Replay controllers against tables or synthetic landscapes: rewards are looked up, nothing is trained.

    Prints per table and controller the median and IQR of the trials needed to first train a top-1 %
    architecture (by mean test accuracy) and the mean best test accuracy at budgets 25, 50 and 100.
    With several tables, --json writes {"tables": [one result per table]}."""
    import json
    from pathlib import Path

    from nas.bench import check_objective, format_results, load_table, plot_curves, replay, with_space
    from nas.errors import InputError
    from nas.objective import Objective
    from search_spaces import load_space

    reward = Objective.parse(objective, target_params, target_latency_ms, objective_weight)

    names = [n.strip() for n in controllers.split(",") if n.strip()]
    for name in names or [controllers]:
        if name not in CONTROLLERS:
            raise InputError(
                f"--controllers: got {name!r}, expected a comma-separated list from {', '.join(CONTROLLERS)}"
            )
    for flag, path in (("--json", json_path), ("--plot", plot)):
        if path and not Path(path).resolve().parent.is_dir():
            raise InputError(f"{flag}: {path}: its folder does not exist, expected a file in an existing folder")
    if plot and len(tables) > 1:
        raise InputError(f"--plot: draws one table, got {len(tables)} --table options")
    loaded = [load_table(table) for table in tables]  # all checked before the first replay
    if space:
        loaded = [with_space(one, load_space(space)) for one in loaded]
    for one in loaded:
        check_objective(one, reward)
    every = []
    for one in loaded:
        click.echo(one.describe())
        click.echo(f"Replaying {', '.join(names)}: {seeds} runs of {budget} trials each")
        every.append(replay(one, names, seeds=seeds, budget=budget, objective=reward, first_seed=first_seed))
        click.echo(format_results(every[-1]))
    if json_path:
        Path(json_path).write_text(json.dumps(every[0] if len(every) == 1 else {"tables": every}, indent=1) + "\n")
        click.echo(f"wrote {json_path}")
    if plot:
        plot_curves(every[0], plot)
        click.echo(f"wrote {plot}")


def _finite(value: float | None, ctx, param) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"got {value}, expected a number of seconds", ctx, param)
    return value


def run(argv: list[str] | None = None) -> int:
    """The console script: runs a command and turns errors into one line and an exit code."""
    try:
        # Without standalone mode, click returns (not raises) the code of a `ctx.exit(code)`.
        code = main.main(args=argv, prog_name="nas", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        return _fail(e.format_message(), e.exit_code)
    except USER_ERRORS as e:
        return _fail(_with_flags(str(e), argv if argv is not None else sys.argv[1:]), 2)
    except SearchInterrupted as e:
        return _fail(str(e), e.exit_code)
    except SearchStopped as e:
        return _fail(f"search stopped: {e}", e.exit_code)
    except ExportFailed as e:
        return _fail(f"export failed: {e}", e.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return _fail("interrupted; finished trials are kept in the run directory", 130)
    return code if isinstance(code, int) else 0


def _with_flags(message: str, argv: list[str]) -> str:
    """The library names a setting as Python does (`image_size: got ...`, as `nas.search(image_size=...)`
    takes it); the command's messages name its option instead (`--image-size: got ...`)."""
    command: click.Command = main
    for token in argv:  # the subcommand run: nas search, nas data prepare, ...
        if isinstance(command, click.Group) and token in command.commands:
            command = command.commands[token]
        elif not token.startswith("-"):
            break
    options = {
        opt.lstrip("-").replace("-", "_"): opt
        for p in command.params
        if isinstance(p, click.Option)
        for opt in p.opts
        if opt.startswith("--")
    }
    head = re.match(r"[a-z][a-z0-9_]*(?=[: ])", message)
    return options[head.group()] + message[head.end() :] if head and head.group() in options else message


def _fail(message: str, code: int) -> int:
    print(f"nas: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def entry_point() -> None:
    sys.exit(run())


if __name__ == "__main__":
    entry_point()
