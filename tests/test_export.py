"""`nas export` for real: two real searches through Ray, exports through the CLI, the generated
model.py run in fresh processes, SavedModel and TFLite run on the held-out split. No mocks.

Each search and the commands that need it run one after another in a background thread, started
when the first test asks for them: the subprocesses spend most of their time starting Ray and
importing TensorFlow, and the in-process tests (the code generator against the builder, say) run
meanwhile.
"""

from __future__ import annotations

import ast
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import tokenize
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from nas_commands import NAS, nas_env
from PIL import Image

from nas.cli import run as nas_cli
from nas.codegen import model_source
from search_spaces import SpaceError, builtin_names, load_space, parse_space

EVIL = '"); import os; os.system("touch pwned"); ("'  # a class name, run name or space name
# One worker each: the two searches share the machine, and each worker process imports TensorFlow.
# The random controller: what is exported does not depend on how it was found.
SEARCH = [
    *NAS,
    "search",
    "--controller",
    "random",
    "--epochs",
    "1",
    "--workers",
    "1",
    "--no-dashboard",
    "--runs-dir",
    "runs",
]
RAY_BUSY = "could not start Ray"  # nas search's message when Ray's start times out on an overloaded machine
EXTRA_SPACES = {  # what the built-in spaces leave out: augmentation, batch norm in dense layers, head dropout,
    # plain conv chains without batch norm, behind a stem
    "extras": "name: extras\nfamily: dense\nlayers: [1, 2]\nlayer: {units: [16, 32], batch_norm: [true, false, "
    "after_activation], activation: [relu, gelu], dropout: [0.0, 0.2]}\naugment: {flip: true, rotation: 0.1, "
    "zoom: 0.1, translation: 0.1, contrast: 0.1, brightness: 0.2, crop: 2}\nhead: {dropout: 0.3}\n",
    "chain": "name: chain\nfamily: conv\nlayers: [2, 3]\nreduce_after: [0]\nstem_to: 4\nstem_filters: 6\n"
    "layer: {kernel_height: [1, 3], "
    "kernel_width: 3, filters: [4, 8], inputs: previous, batch_norm: [none, before_activation, "
    "after_activation], "
    "activation: [relu, tanh]}\n",
}


class Pipeline:
    """Commands (or Python callables) run one after another in a background thread, each once the one
    before succeeded; with `start_after`, once that event is set. Commands run in nas_env(), as
    nas_commands runs nas. `result(name)` waits for a step and
    returns its CompletedProcess; a step after a failed one fails with the failure's output.
    `printing` is set when the first command prints its first line (a search: once Ray is up)."""

    def __init__(
        self,
        cwd: Path,
        steps: list[tuple[str, list[str] | Callable[[], object]]],
        start_after: threading.Event | None = None,
    ):
        self.cwd, self.steps, self.start_after = cwd, steps, start_after
        self.results: dict[str, subprocess.CompletedProcess | str] = {}
        self.ready = {name: threading.Event() for name, _ in steps}
        self.printing = threading.Event()
        self.processes: list[subprocess.Popen] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        if self.start_after is not None:
            self.start_after.wait(timeout=600)
        failure = None
        for name, step in self.steps:
            if failure is None:
                try:
                    self.results[name] = result = self._step(name, step)
                    if result.returncode != 0:
                        failure = f"{name} failed (exit code {result.returncode}):\n{result.stdout}\n{result.stderr}"
                except Exception as e:  # the waiting test reports it
                    failure = self.results[name] = f"{name}: {e!r}"
            else:
                self.results[name] = failure
            self.ready[name].set()
        self.printing.set()

    def _step(self, name: str, step) -> subprocess.CompletedProcess:
        if callable(step):
            step()
            return subprocess.CompletedProcess([name], 0, "", "")
        for _attempt in (1, 2):  # a second time only if Ray could not start (the machine is shared)
            with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: stdout is read as it comes
                process = subprocess.Popen(
                    step,
                    cwd=self.cwd,
                    env=nas_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                )
                self.processes.append(process)
                lines = []
                for line in process.stdout:
                    lines.append(line)
                    self.printing.set()
                process.wait()
                errors.seek(0)
                result = subprocess.CompletedProcess(step, process.returncode, "".join(lines), errors.read())
            if RAY_BUSY not in result.stderr:
                break
        return result

    def result(self, name: str) -> subprocess.CompletedProcess:
        assert self.ready[name].wait(timeout=1200), f"{name}: no result after 20 minutes"
        result = self.results[name]
        assert not isinstance(result, str), result
        assert result.returncode == 0, f"{name}: exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()


# Builds the model from model.py in a fresh process, loads model.weights.h5, and compares it with
# model.keras on the digits test split.
ROUND_TRIP = """
import importlib.util, json, sys
import numpy as np, keras
from nas.data import load_data
out = sys.argv[1]
spec = importlib.util.spec_from_file_location("exported", out + "/model.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
built = module.build_model()
built.load_weights(out + "/model.weights.h5")
saved = keras.saving.load_model(out + "/model.keras", safe_mode=True)
x = load_data("digits").x_test
table = lambda m: [[type(l).__name__, l.name, list(l.output.shape)] for l in m.layers]
difference = np.abs(built.predict(x, verbose=0) - saved.predict(x, verbose=0)).max()
print(json.dumps({"params": [built.count_params(), saved.count_params()], "layers": [table(built), table(saved)],
                  "difference": float(difference), "images": len(x)}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two pipelines in the background:
    cnn10: a cnn10 search on digits, its winner exported in every format by the CLI, the round trip;
    evil: a linear search on an image folder with a class named EVIL, the run renamed to hold EVIL
          (its export runs in the test, in this process, which has imported TensorFlow already)."""
    root = tmp_path_factory.mktemp("export")
    for name, colour in ((EVIL, (250, 20, 20)), ("cat", (20, 20, 250))):
        (root / "pics" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.full((8, 8, 3), colour, np.uint8) + np.uint8(i)
            Image.fromarray(pixels).save(root / "pics" / name / f"{i}.png")
    cnn10, evil = root / "runs" / "cnn10", root / "runs" / f"run{EVIL}"
    first = Pipeline(
        root,
        [
            (
                "search",
                [
                    *SEARCH,
                    "--space",
                    "cnn10",
                    "--budget",
                    "2",
                    "--final-epochs",
                    "2",
                    "--data",
                    "digits",
                    "--name",
                    "cnn10",
                ],
            ),
            (
                "export",
                [*NAS, "export", "cnn10", "--runs-dir", "runs", "--format", "python,keras,savedmodel,tflite,onnx"],
            ),
            ("round trip", [sys.executable, "-c", ROUND_TRIP, str(cnn10 / "export")]),
        ],
    )
    # Started once the first search has started its Ray: two Rays starting at once on a busy
    # machine can time out.
    pipelines = types.SimpleNamespace(
        root=root,
        cnn10_run=cnn10,
        evil_run=evil,
        cnn10=first,
        evil=Pipeline(
            root,
            [
                (
                    "search",
                    [
                        *SEARCH,
                        "--space",
                        "linear",
                        "--budget",
                        "1",
                        "--final-epochs",
                        "1",
                        "--data",
                        "pics",
                        "--image-size",
                        "8",
                        "--name",
                        "linear",
                    ],
                ),
                # nas search refuses such a run name, the file system takes it: the name reaches model.py
                # from the path given to nas export.
                ("rename", lambda: (root / "runs" / "linear").rename(evil)),
            ],
            start_after=first.printing,
        ),
    )
    yield pipelines
    pipelines.cnn10.stop()
    pipelines.evil.stop()


@pytest.fixture(scope="module")
def cnn10_export(runs):
    """The cnn10 run's winner, exported in every format by `python -m nas.cli export`."""
    result = runs.cnn10.result("export")
    assert result.stderr == "", result.stderr  # no converter or TensorFlow noise
    return types.SimpleNamespace(run=runs.cnn10_run, out=runs.cnn10_run / "export", stdout=result.stdout)


def digits_test_images() -> np.ndarray:
    from nas.data import load_data

    return load_data("digits").x_test  # the split the search held out (seed 0)


def layer_table(model) -> list[tuple]:
    return [(type(layer).__name__, layer.name, tuple(layer.output.shape)) for layer in model.layers]


# -- the generator against the builder (runs while the searches start) ------------------------------

SPACES = [*(n for n in builtin_names() if n != "transfer"), *EXTRA_SPACES]  # transfer: tests/test_transfer.py


@pytest.mark.usefixtures("runs")
@pytest.mark.parametrize("name", SPACES)
def test_model_py_builds_what_the_builder_builds(name):
    """Same layers (type, name, order, output shape, config) and parameters, for random architectures."""
    from nas.builder import build_model

    space = parse_space(EXTRA_SPACES[name], source=name) if name in EXTRA_SPACES else load_space(name)
    rng = random.Random(name)
    input_shape = (12, 10, 3) if name != "cnn10" else (8, 8, 1)
    for _ in range(3):
        spec = space.resolve(space.architecture([rng.randrange(len(d.choices)) for d in space.decisions]))
        source = model_source(spec, input_shape, ["a", "b", "c"], {"run": "r", "trial": 1, "val_accuracy": 0.5})
        tree = ast.parse(source)
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported == {"argparse", "keras", "layers"}, imported  # no nas
        module = types.ModuleType("generated")
        exec(compile(tree, "model.py", "exec"), module.__dict__)
        built, expected = module.build_model(), build_model(spec, input_shape, 3)
        assert layer_table(built) == layer_table(expected)
        assert [layer.get_config() for layer in built.layers] == [layer.get_config() for layer in expected.layers]
        assert built.count_params() == expected.count_params() and built.name == expected.name


@pytest.mark.usefixtures("runs")
@pytest.mark.parametrize("name", ["cnn10", "resnet"])
def test_model_py_of_an_ensemble_builds_what_nas_ensemble_builds(name):
    """An ensemble's model.py: a function per member and build_model averaging them, layer for layer
    what nas.ensemble builds from the builder's models (the members' configs included)."""
    from nas.builder import build_model
    from nas.codegen import ensemble_source
    from nas.ensemble import build_ensemble, members

    space = load_space(name)
    rng = random.Random(name)
    specs = [
        space.resolve(space.architecture([rng.randrange(len(d.choices)) for d in space.decisions])) for _ in range(2)
    ]
    source = ensemble_source(specs, [7, 3], (8, 8, 1), ["a", "b", "c"], {"run": "r", "test_accuracy": 0.5})
    module = types.ModuleType("generated")
    exec(compile(source, "model.py", "exec"), module.__dict__)
    built = module.build_model()
    expected = build_ensemble([build_model(spec, (8, 8, 1), 3) for spec in specs], f"{name}_ensemble")
    assert layer_table(built) == layer_table(expected) and built.name == expected.name
    for got, want in zip(members(built), members(expected), strict=True):
        assert [layer.get_config() for layer in got.layers] == [layer.get_config() for layer in want.layers]
    assert built.count_params() == expected.count_params()


def test_generated_code_never_runs_names(tmp_path, monkeypatch):
    """A space name with code in it is refused by the space loader; were one to get past it, model.py
    would still hold it as a string."""
    with pytest.raises(SpaceError, match="name: got"):
        parse_space(f"name: '{EVIL.replace(chr(39), chr(39) * 2)}'\nfamily: linear\nl2: [0.0, 0.1]\n")
    space = load_space("linear")
    spec = {**space.resolve(space.architecture([0, 0, 0])), "space": EVIL}
    source = model_source(spec, (8, 8, 3), [EVIL, "cat\n" + EVIL], {"run": "run\n" + EVIL, "trial": 1})
    assert_code_only_in_literals(source)
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("generated")
    exec(compile(source, "model.py", "exec"), module.__dict__)
    assert module.CLASS_NAMES == [EVIL, "cat\n" + EVIL] and module.build_model().name == EVIL + "_child"
    assert not list(tmp_path.rglob("pwned"))


def assert_code_only_in_literals(source: str) -> None:
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if "system" in token.string:
            assert token.type in (tokenize.STRING, tokenize.COMMENT), token


# -- names with code in them ---------------------------------------------------------------------------


def test_class_and_run_names_with_code_stay_strings(runs, monkeypatch, capsys):
    """The class folder is named EVIL and the run directory renamed to hold EVIL too: model.py holds
    them as strings, runs (cwd: the test's folder) with the exported weights, and touches nothing."""
    runs.evil.result("rename")
    monkeypatch.chdir(runs.root)  # the run's data, `pics`, is relative to where the search ran
    assert nas_cli(["export", str(runs.evil_run), "--format", "python,keras"]) == 0, capsys.readouterr().err
    out = runs.evil_run / "export"
    source = (out / "model.py").read_text()
    assert_code_only_in_literals(source)
    assert repr(f"run{EVIL}") in source.splitlines()[0]
    assignment = next(
        node for node in ast.parse(source).body if isinstance(node, ast.Assign) and node.targets[0].id == "CLASS_NAMES"
    )
    assert ast.literal_eval(assignment.value) == [EVIL, "cat"] == json.loads((out / "labels.json").read_text())
    assert json.loads((out / "metadata.json").read_text())["run"]["name"] == f"run{EVIL}"
    result = subprocess.run(
        [sys.executable, str(out / "model.py"), "--weights", str(out / "model.weights.h5")],
        cwd=runs.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Loaded weights" in result.stdout and "Total params" in result.stdout
    assert not list(runs.root.rglob("pwned")) and not Path("pwned").exists()


# -- the cnn10 winner, exported in every format -------------------------------------------------------


def test_export_writes_every_format_with_metadata(cnn10_export):
    run, out, stdout = cnn10_export.run, cnn10_export.out, cnn10_export.stdout
    for name in (
        "model.py",
        "model.keras",
        "model.weights.h5",
        "labels.json",
        "metadata.json",
        "model.tflite",
        "model.onnx",
        "saved_model/saved_model.pb",
    ):
        assert (out / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".export")], "a staging folder was left behind"
    summary = json.loads((run / "summary.json").read_text())
    metadata = json.loads((out / "metadata.json").read_text())
    best = summary["best"]
    assert metadata["trial"] == best["trial"] == metadata["best_trial"]
    assert metadata["run"] == {"name": "cnn10", "path": str(run.resolve())}
    assert metadata["space"]["name"] == "cnn10" and metadata["architecture"]["choices"] == best["arch"]["choices"]
    assert metadata["architecture"]["values"] == best["values"]
    assert metadata["metrics"]["val_accuracy"] == best["val_accuracy"]
    assert abs(metadata["metrics"]["test_accuracy"] - summary["test_accuracy"]) < 1e-6
    assert metadata["metrics"]["params"] == summary["final"]["params"]
    # the same winner on the same test images: the search's evaluation and the export's agree
    assert metadata["metrics"]["evaluation"]["confusion_matrix"] == summary["evaluation"]["confusion_matrix"]
    assert metadata["metrics"]["evaluation"]["class_names"] == [str(d) for d in range(10)]
    assert metadata["data"]["source"] == "digits" and metadata["preprocessing"]["image_size"] == [8, 8]
    assert metadata["preprocessing"]["color_mode"] == "grayscale" and metadata["input_shape"] == [8, 8, 1]
    assert (
        metadata["nas_version"]
        and metadata["date"]
        and metadata["formats"] == list(("python", "keras", "savedmodel", "tflite", "onnx"))
    )
    # onnxruntime checked model.onnx on the run's test images before it was kept
    assert metadata["onnx"]["checked_images"] == metadata["metrics"]["test_images"] > 0
    assert metadata["onnx"]["max_abs_difference"] <= 1e-4 and metadata["onnx"]["input"] == "images"
    assert json.loads((out / "labels.json").read_text()) == [str(i) for i in range(10)]
    # cnn10's search returns the ensemble of its best two children (training.ensemble): both trials here
    trials = [m["trial"] for m in summary["final"]["members"]]
    assert metadata["ensemble"]["trials"] == trials and sorted(trials) == [1, 2] and trials[0] == best["trial"]
    assert metadata["ensemble"]["members"][0]["architecture"]["choices"] == best["arch"]["choices"]
    assert "ensemble of trials" in metadata["model"]
    source = (out / "model.py").read_text()
    header = source.splitlines()[0]
    assert f"the ensemble of trials {trials[0]} and {trials[1]}" in header and '"cnn10"' in header
    assert "def build_member_1(" in source and "def build_member_2(" in source
    assert "model.tflite" in stdout and "saved_model/" in stdout
    # A second export into the same folder is refused, and leaves it as it was.
    before = sorted(p.name for p in out.iterdir())
    code = nas_cli(["export", str(run)])
    assert code == 2 and sorted(p.name for p in out.iterdir()) == before


def test_savedmodel_tflite_and_onnx_give_the_keras_top1(cnn10_export):
    import keras
    import onnxruntime
    import tensorflow as tf

    out = cnn10_export.out
    x = digits_test_images()
    expected = keras.saving.load_model(out / "model.keras", safe_mode=True).predict(x, verbose=0)
    reloaded = tf.saved_model.load(str(out / "saved_model"))  # kept: its functions need its variables
    served = reloaded.serve(tf.constant(x, tf.float32)).numpy()
    lite = tflite_predict(out / "model.tflite", x)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx,) = session.run(["probabilities"], {"images": x.astype(np.float32)})
    for name, got in (("savedmodel", served), ("tflite", lite), ("onnx", onnx)):
        assert got.shape == expected.shape
        assert np.array_equal(got.argmax(1), expected.argmax(1)), name
        print(
            f"{name}: top-1 agrees on {len(x)} test images, max probability difference "
            f"{np.abs(got - expected).max():.2e}"
        )
    assert np.abs(onnx - expected).max() <= 1e-4


def test_onnx_of_a_model_with_augmentation_answers_as_keras_in_inference(tmp_path):
    """Keras's own ONNX export keeps the random layers' ops, which onnxruntime refuses; nas's
    converts the model in inference mode."""
    import keras
    import onnxruntime

    from nas.onnx_export import write_onnx

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.RandomTranslation(0.2, 0.2, seed=1)(x)
    x = keras.layers.RandomRotation(0.1, seed=2)(x)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).uniform(0, 255, (40, 8, 8, 1)).astype(np.float32)
    check = write_onnx(model, tmp_path / "model.onnx", images)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(["probabilities"], {"images": images})
    assert check["checked_images"] == 40 and np.abs(got - model(images, training=False).numpy()).max() <= 1e-4


def tflite_predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Runs a .tflite file with LiteRT's interpreter, or TensorFlow 2.21's own (deprecated, still there)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = Interpreter(model_path=str(path))
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    (probabilities,) = interpreter.get_signature_runner()(**{name: x.astype(np.float32)}).values()
    return probabilities


def test_another_trial_is_retrained_and_named(cnn10_export, tmp_path, capsys):
    run = cnn10_export.run
    metadata = json.loads((run / "export" / "metadata.json").read_text())
    other = ({1, 2} - {metadata["best_trial"]}).pop()
    assert nas_cli(["export", str(run), "--trial", str(other), "--format", "python"]) == 0
    printed = capsys.readouterr().out
    assert f"Retraining trial {other}" in printed and "test accuracy" in printed
    out = run / f"export-trial-{other}"
    exported = json.loads((out / "metadata.json").read_text())
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    record = next(t for t in trials if t["trial"] == other)
    assert exported["trial"] == other and exported["best_trial"] == metadata["best_trial"]
    assert exported["architecture"]["choices"] == record["arch"]["choices"]
    assert exported["metrics"]["val_accuracy"] == record["metrics"]["val_accuracy"]
    assert "retrained by nas export" in exported["model"]
    # cnn10 searches its children at half their filters (training.search_width); the export is the
    # model at full width, as the final training builds it
    from nas.builder import build_model

    space = parse_space((run / "space.yaml").read_text())
    arch = space.from_json(record["arch"])
    full, searched = (build_model(space.resolve(arch, searched=s), (8, 8, 1), 10) for s in (False, True))
    assert exported["metrics"]["params"] == full.count_params() > searched.count_params()
    assert record["metrics"]["params"] == searched.count_params()
    assert f"trial {other}:" in (out / "model.py").read_text().splitlines()[0]
    assert not (out / "model.tflite").exists()

    # A trial that failed, and one the run does not have, are refused in one line; nothing is written.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "space.yaml", "trials.jsonl"):
        shutil.copy(run / name, copy / name)
    failed = {**trials[0], "trial": 3, "status": "failed", "error": "ValueError: boom", "metrics": {}}
    with open(copy / "trials.jsonl", "a") as f:
        f.write(json.dumps(failed) + "\n")
    capsys.readouterr()
    for trial, message in (
        ("3", "--trial: trial 3 of run 'copy' failed (ValueError: boom), expected a completed"),
        ("7", "--trial: got 7, expected a completed trial of run 'copy' (completed: 1, 2"),
    ):
        assert nas_cli(["export", str(copy), "--trial", trial]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in copy.iterdir()) == ["config.json", "space.yaml", "trials.jsonl"]


def test_a_run_without_its_saved_ensemble_retrains_it_and_a_stale_one_is_not_exported(cnn10_export, tmp_path, capsys):
    """A copy of the cnn10 run without best/ (left behind, say): export retrains both members of the
    ensemble the search returned and averages them as the search did. A run whose last session
    stopped before retraining (its summary has no final model) does not export the model an earlier
    session left in best/: it retrains today's winner alone."""
    import keras

    from nas.ensemble import members

    run = cnn10_export.run
    trials = json.loads((run / "export" / "metadata.json").read_text())["ensemble"]["trials"]
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("best", "export*"))
    capsys.readouterr()
    assert nas_cli(["export", str(bare), "--format", "keras"]) == 0
    printed = capsys.readouterr().out
    assert f"Retraining trials {trials[0]}, {trials[1]} (the run has no best/model.keras)" in printed
    exported = json.loads((bare / "export" / "metadata.json").read_text())
    assert exported["ensemble"]["trials"] == trials and exported["model"].startswith("the ensemble of trials")
    model = keras.saving.load_model(bare / "export" / "model.keras")
    assert [m.name for m in members(model)] == ["member_1", "member_2"]
    assert exported["metrics"]["params"] == model.count_params()

    stale = tmp_path / "stale"
    shutil.copytree(run, stale, ignore=shutil.ignore_patterns("export*"))
    summary = json.loads((stale / "summary.json").read_text())
    stopped = {**summary, "status": "stopped", "final": None, "test_accuracy": None}  # as a resumed session writes it
    (stale / "summary.json").write_text(json.dumps(stopped))
    assert nas_cli(["export", str(stale), "--format", "keras"]) == 0
    assert f"Retraining trial {trials[0]} (its best/model.keras is from before" in capsys.readouterr().out
    exported = json.loads((stale / "export" / "metadata.json").read_text())
    assert "ensemble" not in exported and exported["trial"] == trials[0]
    assert not members(keras.saving.load_model(stale / "export" / "model.keras"))


def test_model_py_round_trip_in_a_fresh_process(runs):
    """model.py + model.weights.h5 is the model in model.keras: same layers, parameters and predictions."""
    report = json.loads(runs.cnn10.result("round trip").stdout.strip().splitlines()[-1])
    assert report["params"][0] == report["params"][1]
    assert report["layers"][0] == report["layers"][1]
    assert report["difference"] <= 1e-5, report["difference"]
    print(
        f"round trip: {report['params'][0]} parameters, max difference {report['difference']:.2e} on "
        f"{report['images']} test images"
    )
