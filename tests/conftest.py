import os
from types import SimpleNamespace

import pytest

# Quiet TensorFlow's C++ start-up messages in test output; one thread per op keeps timings stable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Modules that run one after another in one pytest-xdist worker: those whose Ray heads may take the
# dashboard's port 8265 (a search with its dashboard on, a `nas serve`; the cluster test's head has
# none), and those that read the finished cnn10 search of the session fixture `cnn10_search`
# (session fixtures are made once per xdist worker).
SHARED_WORKER_MODULES = {"test_end_to_end", "test_serve", "test_report"}
# The groups that take minutes, longest first (measured on 2 cores): handed out before the rest, so
# that no worker starts one of them while the other has nothing left to do.
SLOWEST_FIRST = [
    "shared-worker",
    "test_export",
    "test_cluster",
    "test_faults",
    "test_bad_inputs",
    "test_kill",
    "test_transfer",
]


@pytest.hookimpl(wrapper=True)  # around xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Groups the tests for pytest-xdist (`-n 2 --dist loadgroup`, the suite's default): a module's
    tests share a worker (and so its module fixtures, such as a finished search), and so do the
    modules of SHARED_WORKER_MODULES. Two workers keep two cores busy while one test waits on Ray or
    a process starting; a third gains nothing (benchmarks/RESULTS.md, "Test suite")."""
    groups = {}
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        groups[item] = "shared-worker" if module in SHARED_WORKER_MODULES else module
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    items.sort(
        key=lambda item: SLOWEST_FIRST.index(groups[item]) if groups[item] in SLOWEST_FIRST else len(SLOWEST_FIRST)
    )  # stable: a module's tests keep their order
    return (yield)


@pytest.fixture(scope="session")
def cnn10_search(tmp_path_factory):
    """A search as a user starts it, every default but the size: cnn10 (REINFORCE, two workers, its
    Ray dashboard on) for 4 children of 1 epoch on digits, the winner retrained 3 epochs; checked by
    test_end_to_end, its run directory read by test_report (copy it to change it). Returns the
    finished process, the dashboard's URL, its page's HTTP status and the run directory."""
    from nas_commands import run_with_dashboard

    root = tmp_path_factory.mktemp("cnn10_search")
    args = ["--space", "cnn10", "--budget", "4", "--epochs", "1", "--final-epochs", "3", "--data", "digits"]
    result, url, status = run_with_dashboard("search", *args, "--runs-dir", str(root), "--name", "e2e", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return SimpleNamespace(result=result, url=url, status=status, run=root / "e2e")


def train_digits_model_dir(out, classes=range(10), epochs=8, seed=0, data="digits"):
    """A real model directory (as `nas export` writes) holding a small CNN trained on scikit-learn's
    digits of the given classes: about 3 s on one core. Returns (path, dataset). `data` may name
    other images of digits (an .npz of x, y, say) to train on instead."""
    from nas.data import load_data
    from nas.model_dir import write_model_dir
    from nas.trainer import train_final
    from search_spaces import load_space

    data = load_data(data, seed=seed)
    if list(classes) != list(range(10)):
        import numpy as np

        keep = sorted(classes)
        index = {c: i for i, c in enumerate(keep)}
        for split in ("train", "val", "test"):
            x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
            mask = np.isin(y, keep)
            setattr(data, f"x_{split}", x[mask])
            setattr(data, f"y_{split}", np.array([index[v] for v in y[mask]], np.int32))
        data.class_names = [str(c) for c in keep]
    space = load_space("cnn10")
    spec = space.resolve(space.architecture([_chain_choice(d) for d in space.decisions]))
    # The recipe these tests were written with, not cnn10's own (tuned for 4,000 28x28 images, too few
    # steps for 1,400 8x8 digits): no augmentation or dropout, Adam 5e-3, batches of 32.
    spec = {
        **spec,
        "augment": {},
        "head": {"dropout": 0.0},
        "training": {**spec["training"], "learning_rate": 0.005, "batch_size": 32},
    }
    model, metrics = train_final(
        spec, data.final_arrays(), input_shape=data.input_shape, num_classes=data.num_classes, epochs=epochs, seed=seed
    )
    write_model_dir(out, model, data.class_names, {"source": "tests/conftest.py", "space": "cnn10", "metrics": metrics})
    return out, data


@pytest.fixture(scope="session")
def digits_model_dir(tmp_path_factory):
    """A model directory trained on all ten digits; read-only for the tests that share it."""
    path, _ = train_digits_model_dir(tmp_path_factory.mktemp("digits_model") / "model")
    return path


def _chain_choice(decision) -> int:
    """cnn10 as a plain chain of 3x3 convolutions of 16 filters (widened at each reduction): each layer
    fed by the one before."""
    layer, _, what = decision.name.partition(".")
    if what.startswith("input"):
        return decision.choices.index(int(what[5:]) == int(layer[5:]) - 1)
    return decision.choices.index(
        {"kernel_height": 3, "kernel_width": 3, "filters": 16, "batch_norm": "before_activation"}[what]
    )
