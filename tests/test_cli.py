"""The `nas` command as a user runs it: real subprocesses, real files, real Ray."""

from nas_commands import run_nas
from PIL import Image


def assert_one_line_error(result, *fragments, runs=None):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nas: error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    if runs is not None:
        assert not runs.exists() or not any(runs.iterdir()), "no run directory may be left behind"


def test_spaces_lists_the_builtin_spaces_with_their_sizes(tmp_path):
    result = run_nas("spaces", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name, size in [("cnn10", "2.57e29"), ("dnn", "3,768"), ("linear", "24"), ("resnet", "48")]:
        assert name in result.stdout and size in result.stdout
    detail = run_nas("spaces", "linear", cwd=tmp_path)
    assert "training.learning_rate" in detail.stdout and "0.0003, 0.001, 0.003, 0.01" in detail.stdout


def test_unknown_space(tmp_path):
    result = run_nas("search", "--space", "cnn11", "--runs-dir", "runs", cwd=tmp_path)
    assert_one_line_error(
        result,
        "unknown space 'cnn11'",
        "known spaces: bench_cnn, bench_dense, cnn10, cnn10_aug, dnn, linear, resnet, transfer",
        runs=tmp_path / "runs",
    )


def test_budget_below_one(tmp_path):
    result = run_nas("search", "--budget", "0", "--runs-dir", "runs", cwd=tmp_path)
    assert_one_line_error(result, "'--budget'", "0 is not in the range x>=1", runs=tmp_path / "runs")


def test_missing_data_path(tmp_path):
    result = run_nas("search", "--data", "nowhere/", "--runs-dir", "runs", cwd=tmp_path)
    assert_one_line_error(result, "--data: nowhere/: no such file or folder", runs=tmp_path / "runs")


def test_folder_with_one_class(tmp_path):
    (tmp_path / "pics" / "cat").mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "pics" / "cat" / f"{i}.png")
    result = run_nas("search", "--data", "pics", "--runs-dir", "runs", cwd=tmp_path)
    assert_one_line_error(result, "pics: found 1 class folder(s)", "at least 2 classes", runs=tmp_path / "runs")


def test_bad_yaml_space_file(tmp_path):
    (tmp_path / "mine.yaml").write_text("family: conv\nlayer: {filters: [8, 16}\n")
    result = run_nas("search", "--space", "mine.yaml", "--runs-dir", "runs", cwd=tmp_path)
    assert_one_line_error(result, "mine.yaml: line 2: malformed YAML", runs=tmp_path / "runs")


def test_unknown_option_is_one_line_too(tmp_path):
    result = run_nas("search", "--budgte", "3", cwd=tmp_path)
    assert_one_line_error(result, "No such option '--budgte'. (Did you mean one of: '--budget', '--time-budget'?)")


def test_accelerators_the_cluster_lacks_are_refused_before_any_trial(tmp_path):
    """Once, with --tpu, end to end (Ray is started to know what it has: 24 s); every refusal's
    message (GPUs, TPUs, CPUs) is checked in test_tune against a cluster description."""
    result = run_nas("search", "--data", "digits", "--no-dashboard", "--runs-dir", "runs", "--tpu", cwd=tmp_path)
    assert_one_line_error(result, "--tpu: a trial asks for 1 TPU, but the Ray cluster has 0", runs=tmp_path / "runs")
