"""`nas report`, `nas runs` and `nas show` on real run directories: the finished cnn10 search the
suite shares (conftest's `cnn10_search`, copied here as runs/tiny), one real search interrupted with
Ctrl-C after its first trial (then resumed in a copy), and copies of them edited into the other cases
(a failed trial, killed, running, damaged, hostile, only failures)."""

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from io import BytesIO

import pytest
from nas_commands import run_nas, start_nas
from PIL import Image

SEARCH = [
    "search",
    "--epochs",
    "1",
    "--final-epochs",
    "1",
    "--data",
    "digits",
    "--no-dashboard",
    "--runs-dir",
    "runs",
]
PLOTS = ("rewards", "controller", "pareto", "winner")


def nas(*args, cwd, timeout=300):
    return run_nas(*args, cwd=cwd, timeout=timeout, COLUMNS="200")  # rich's tables: no name cut short in a pipe


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cnn10_search):
    """runs/tiny: a copy of the suite's finished cnn10 search (4 trials; its winner's diagram has skip
    connections); and runs/stopped: a search of the cheaper dnn space interrupted by SIGINT while its
    second trial trains (slowly, on purpose)."""
    root = tmp_path_factory.mktemp("report")
    shutil.copytree(cnn10_search.run, root / "runs" / "tiny", ignore=shutil.ignore_patterns("tune"))
    stopped = start_nas(
        *SEARCH, "--space", "dnn", "--budget", "3", "--workers", "1", "--name", "stopped", cwd=root, faults="2:slow"
    )
    state = root / "runs" / "stopped" / "state.json"
    try:
        deadline = time.monotonic() + 600
        while (
            not (state.exists() and [t["trial"] for t in json.loads(state.read_text())["running"]] == [2])
            and time.monotonic() < deadline
        ):  # trial 1 has finished, trial 2 is handed to the worker
            assert stopped.poll() is None, stopped.communicate()[1]
            time.sleep(0.2)
        time.sleep(3)  # trial 2 is training (5 s a step)
        os.kill(stopped.pid, signal.SIGINT)  # as Ctrl-C (or `kill -INT`) sends it
        sent = time.monotonic()
        stopped_out, stopped_err = stopped.communicate(timeout=300)
        stop_seconds = time.monotonic() - sent
    finally:
        if stopped.poll() is None:
            os.killpg(stopped.pid, signal.SIGKILL)
    assert stopped.returncode == 130, stopped_err
    return {
        "root": root,
        "runs": root / "runs",
        "tiny_out": cnn10_search.result.stdout,
        "stopped_out": stopped_out,
        "stopped_err": stopped_err,
        "stop_seconds": stop_seconds,
    }


def copy_run(runs, name, new):
    target = runs["runs"] / new
    shutil.copytree(runs["runs"] / name, target, ignore=shutil.ignore_patterns("tune"))
    return target


def check_page(run):
    """The page exists, references nothing outside itself, and its images and PNGs are valid."""
    page = (run / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert 'src="http' not in page and "href=" not in page and "<link" not in page and "url(" not in page
    assert "<script" not in page
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        image = Image.open(BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert image.format == "PNG" and image.width > 0 and image.height > 0
    return page, len(sources)


def check_png(path):
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_a_finished_search_writes_its_report(runs):
    run = runs["runs"] / "tiny"
    assert "Report: " in runs["tiny_out"] and (run / "report.html").exists()
    page, images = check_page(run)
    assert images == len(PLOTS) + 1  # and the retrained winner's confusion matrix
    for name in (*PLOTS, "confusion"):
        check_png(run / "report" / f"{name}.png")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["trials_failed"] == 0
    assert "The ensemble on the test split" in page and "Per class" in page  # cnn10's best two (training.ensemble)
    members = ", ".join(str(m["trial"]) for m in summary["final"]["members"])
    assert f"ensemble of trials {members}, which averages" in page
    assert f"balanced accuracy <b>{summary['evaluation']['balanced_accuracy']:.4f}</b>" in page
    assert 'class="status-finished"' in page  # not `running`: the search wrote it while it held the lock
    assert f"{summary['test_accuracy']:.4f}" in page and "test accuracy" in page
    assert "Failed trials" not in page
    assert "Top 4 architectures" in page and f'<td class="n">{summary["best"]["trial"]}</td>' in page
    assert "data_fingerprint" in page  # the settings, from config.json


def test_a_failed_trial_is_listed_with_its_error_and_left_out_of_the_ranking(runs):
    """The search's worst child turned into one that failed, as trials.jsonl records a child whose
    worker raised (tests/test_faults.py makes real ones)."""
    run = copy_run(runs, "tiny", "one-failed")
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    worst = min(records, key=lambda r: (r["reward"], -r["trial"]))
    failed = {"status": "failed", "metrics": {}, "reward": 0.0, "error": "InjectedFault: trial failed on purpose"}
    lines = [json.dumps({**r, **failed} if r is worst else r) for r in records]
    (run / "trials.jsonl").write_text("\n".join(lines) + "\n")
    result = nas("report", str(run), cwd=runs["root"])
    assert result.returncode == 0, result.stderr
    page, images = check_page(run)
    assert images == len(PLOTS) + 1
    assert "Failed trials (1)" in page and "InjectedFault: trial failed on purpose" in page
    assert "Top 3 architectures" in page


def test_an_interrupted_search_writes_its_report(runs):
    run = runs["runs"] / "stopped"
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert not (run / "best").exists()
    assert "Report: " in runs["stopped_out"]
    page, images = check_page(run)
    assert images == len(PLOTS)
    for name in PLOTS:
        check_png(run / "report" / f"{name}.png")
    assert 'class="status-interrupted"' in page and "It was not retrained" in page


def test_ctrl_c_stopped_the_search_at_once_and_it_resumes(runs):
    """Ctrl-C landed while trial 2 trained (slowly: 5 s a step) and did not wait for it: the search
    ended with one line and exit 130, trial 2 stayed `running`, and --resume trains it under its number."""
    assert runs["stop_seconds"] < 60  # trial 2 would take minutes to finish
    (line,) = runs["stopped_err"].strip().splitlines()
    assert line.startswith("nas: error: interrupted after 1 finished trials") and line.endswith("--resume")
    run = copy_run(runs, "stopped", "resumed")
    assert [t["trial"] for t in json.loads((run / "state.json").read_text())["running"]] == [2]

    resumed = nas("search", "--name", "resumed", "--runs-dir", "runs", "--resume", cwd=runs["root"], timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert [r["trial"] for r in records] == [1, 2, 3]
    assert all(r["status"] == "completed" for r in records)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert json.loads((run / "config.json").read_text())["name"] == "resumed"  # a copied run resumes as itself


def test_nas_report_rewrites_it_from_the_run_directory_alone(runs):
    run = copy_run(runs, "stopped", "moved")
    shutil.rmtree(run / "report")
    (run / "report.html").unlink()
    result = nas("report", "moved", "--runs-dir", str(runs["runs"]), cwd=runs["root"])
    assert result.returncode == 0, result.stderr
    assert str(run / "report.html") in result.stdout
    check_page(run)
    for name in PLOTS:
        check_png(run / "report" / f"{name}.png")


def test_a_report_of_200_trials_is_fast_and_imports_neither_tensorflow_nor_ray(runs):
    run = copy_run(runs, "tiny", "big")
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    with open(run / "trials.jsonl", "w") as f:
        for n in range(1, 201):
            record = {**records[n % len(records)], "trial": n}
            if record["status"] == "completed":
                record["metrics"] = {**record["metrics"], "val_accuracy": 0.5 + n / 500, "params": 1000 + 37 * n}
                record["reward"] = record["metrics"]["val_accuracy"]
            f.write(json.dumps(record) + "\n")
    code = (
        "import sys, time; from nas.report import write_report; start = time.process_time(); "
        f"write_report({str(run)!r}); print(time.process_time() - start); "
        "assert not {'tensorflow', 'keras', 'ray'} & set(sys.modules), sorted(sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 3.0  # CPU seconds: the machine may be busy, the wall clock says little
    page, _ = check_page(run)
    assert "200 / 4" in page and "Top 10 architectures" in page


def test_hostile_values_come_out_escaped(runs):
    run = copy_run(runs, "tiny", "hostile")
    evil = "<script>alert(1)</script>"
    lines = []
    for line in (run / "trials.jsonl").read_text().splitlines():
        record = json.loads(line)
        record["values"] = {**record["values"], "layer0.filters": evil, evil: evil}
        record["error"] = record["error"] and evil
        lines.append(json.dumps(record))
    (run / "trials.jsonl").write_text("\n".join(lines) + "\n")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data": evil, evil: evil}))
    result = nas("report", str(run), cwd=runs["root"])
    assert result.returncode == 0, result.stderr
    page, _ = check_page(run)  # no <script at all
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_run_whose_trials_all_failed_still_gets_a_report(runs):
    run = copy_run(runs, "stopped", "all-failed")
    lines = []
    for line in (run / "trials.jsonl").read_text().splitlines():
        record = json.loads(line)
        lines.append(
            json.dumps(
                {
                    **record,
                    "status": "failed",
                    "metrics": {},
                    "reward": 0.0,
                    "error": "ChildFailed: training loss became nan in epoch 1",
                }
            )
        )
    (run / "trials.jsonl").write_text("\n".join(lines) + "\n")
    (run / "summary.json").unlink()
    result = nas("report", str(run), cwd=runs["root"])
    assert result.returncode == 0, result.stderr
    page, images = check_page(run)
    assert images == 2  # rewards (failed trials marked) and the controller; nothing to compare or draw
    assert not (run / "report" / "pareto.png").exists() and not (run / "report" / "winner.png").exists()
    assert "No trial completed" in page and "ChildFailed" in page


def test_runs_lists_every_run_with_its_status(runs):
    copy_run(runs, "tiny", "killed").joinpath("summary.json").unlink()  # a driver that died: no summary
    running = copy_run(runs, "tiny", "held")
    damaged = copy_run(runs, "tiny", "damaged")
    (damaged / "config.json").write_text("{not json")
    (runs["runs"] / "notes").mkdir()  # not a run: skipped
    (runs["runs"] / "README.txt").write_text("not a run")
    fd = os.open(running / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a live search holds it
        result = nas("runs", "--runs-dir", str(runs["runs"]), cwd=runs["root"])
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    tiny = json.loads((runs["runs"] / "tiny" / "summary.json").read_text())
    assert "finished" in rows["tiny"] and "4/4" in rows["tiny"] and f"{tiny['test_accuracy']:.4f}" in rows["tiny"]
    assert f"{tiny['best']['val_accuracy']:.4f}" in rows["tiny"] and "cnn10" in rows["tiny"]
    assert "interrupted" in rows["stopped"] and "1/3" in rows["stopped"]
    assert "killed" in rows["killed"] and "running" in rows["held"] and "damaged" in rows["damaged"]
    assert "notes" not in rows and "README.txt" not in result.stdout
    assert "damaged: " in result.stdout and "config.json: line 1: not valid JSON" in result.stdout


def test_show_prints_the_summary_and_the_top_trials(runs):
    result = nas("show", "tiny", "--runs-dir", str(runs["runs"]), cwd=runs["root"])
    assert result.returncode == 0, result.stderr
    summary = json.loads((runs["runs"] / "tiny" / "summary.json").read_text())
    assert "finished" in result.stdout and "4 of 4 finished: 4 completed, 0 failed" in result.stdout
    assert "Top 4 architectures" in result.stdout and f"{summary['test_accuracy']:.4f}" in result.stdout
    assert f"trial {summary['best']['trial']}" in result.stdout
    # the winner on the test split: its per-class table and confusion matrix, from summary.json
    evaluation = summary["evaluation"]
    assert "The ensemble on the test split" in result.stdout and "precision  recall" in result.stdout
    members = ", ".join(str(m["trial"]) for m in summary["final"]["members"])
    assert f"the ensemble of trials {members} retrained" in result.stdout
    assert f"Ensemble of trials {members}" in result.stdout
    assert sum(map(sum, evaluation["confusion_matrix"])) == evaluation["images"] == 360  # digits' test split
    row = evaluation["per_class"][3]
    assert f"{row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {row['support']:7d}" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["report", "nowhere"], "nowhere: no such run"),
        (["show", "torn"], "trials.jsonl: line 1: not a JSON record"),
        (["show", "strangers"], "summary.json: final: members: got [{'trial': 99}, {'trial': 98}]"),
        (["runs", "--runs-dir", "missing"], "--runs-dir: missing: no such folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs, args, fragment):
    torn = runs["runs"] / "torn"
    if not torn.exists():
        copy_run(runs, "tiny", "torn")
        text = (torn / "trials.jsonl").read_text()
        (torn / "trials.jsonl").write_text("{torn\n" + text)
    strangers = runs["runs"] / "strangers"  # an ensemble of a trial the run does not have
    if not strangers.exists():
        copy_run(runs, "tiny", "strangers")
        summary = json.loads((strangers / "summary.json").read_text())
        summary["final"]["members"] = [{"trial": 99}, {"trial": 98}]
        (strangers / "summary.json").write_text(json.dumps(summary))
    result = nas(*args, *([] if "--runs-dir" in args else ["--runs-dir", str(runs["runs"])]), cwd=runs["root"])
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("nas: error: ") and fragment in line
