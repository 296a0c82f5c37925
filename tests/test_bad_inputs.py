"""The bad input corpus: every case in `bad_inputs/cases.yaml` runs the real `nas` command in a
subprocess and must end with exit code 2 and one line, `nas: error: ...`, naming what is at fault,
without a traceback and without creating or touching a run directory.

A case is data (see the head of cases.yaml); this file only knows how to make its files and run it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from nas_commands import start_nas
from PIL import Image

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())
CASE_KEYS = {"id", "args", "expect", "files", "timeout", "xfail", "memory_mib", "env", "skipped"}
DEFAULT_TIMEOUT = 60
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes anywhere: no permission errors


# -- making a case's files -------------------------------------------------------------------------


def _images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (8, 8), (i * 37 % 256, 40, 200)).save(folder / f"{i}.png")


def _array(spec) -> np.ndarray:
    if isinstance(spec, list):
        return np.array(spec)
    if "repeat" in spec:
        return np.repeat(np.array(spec["repeat"]), spec["times"])
    return np.full(spec["shape"], spec.get("value", 0))


def _garbage(n: int) -> bytes:
    return bytes(0x80 + i % 64 for i in range(n))  # continuation bytes: never valid UTF-8, never a format's magic


def _unwritable_dir(path: Path) -> None:
    if IS_ROOT:
        path.write_text("a file where a folder would have to be\n")
    else:
        path.mkdir(parents=True)
        path.chmod(0o500)


def _npz_header(path: Path, spec: dict) -> None:
    """An .npz whose x.npy header claims `shape` (of uint8) but holds no pixels, and a y of 10 labels:
    a few hundred bytes that numpy.load would try to fill with the whole shape."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": tuple(spec)})
    labels = io.BytesIO()
    np.save(labels, np.arange(10) % 2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue())  # the magic string and the header, no data
        archive.writestr("y.npy", labels.getvalue())


def _bomb_png(path: Path, side: int) -> None:
    """A one-bit side x side PNG of zeros: kilobytes on disk, side**2 pixels once decoded."""
    Image.new("1", (side, side)).save(path)


GENERATORS = {
    "npz_header": _npz_header,
    "bomb_png": _bomb_png,
    "fifo": lambda path, _: os.mkfifo(path),
    "space": lambda path, name: shutil.copyfile(CORPUS / "spaces" / name, path),
    "images": lambda path, count: _images(path, count),
    "corrupt_png": lambda path, n: path.write_bytes(b"\x89PNG\r\n\x1a\n" + _garbage(n)),
    "garbage": lambda path, n: path.write_bytes(_garbage(n)),
    "npz": lambda path, arrays: np.savez(path, **{k: _array(v) for k, v in arrays.items()}),
    "empty_dir": lambda path, _: path.mkdir(parents=True, exist_ok=True),
    "unwritable_dir": lambda path, _: _unwritable_dir(path),
    "model_dir": lambda path, source: shutil.copytree(source, path),  # source: a fixture's model directory
}


def make_files(root: Path, files: dict, request=None) -> None:
    for name, spec in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, str):
            path.write_text(spec)
        else:
            ((kind, value),) = spec.items()
            if kind == "model_dir":  # a real trained model directory, from a session fixture of conftest.py
                value = request.getfixturevalue(f"{value}_model_dir")
            GENERATORS[kind](path, value)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a digest of its content (or its kind); a run's lock file aside,
    which `--resume` takes (and leaves, by design) before it reads the run."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.name == ".lock":
            continue
        if path.is_file():
            state[str(path.relative_to(root))] = hashlib.sha1(path.read_bytes()).hexdigest()
        else:
            state[str(path.relative_to(root))] = "dir" if path.is_dir() else "other"
    return state


# -- running a case ---------------------------------------------------------------------------------


def nas(args: list[str], cwd: Path, timeout: float, memory_mib: int | None = None, env=None) -> tuple[int, str, str]:
    """Runs `nas ARGS`; a hang is ended with all it started, in the process group start_nas gave it."""
    process = start_nas(*args, cwd=cwd, memory_limit=memory_mib and memory_mib * 2**20, **(env or {}))
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"no answer within {timeout:g} s; stderr ends:\n{err[-2000:]}")
    return process.returncode, out, err


def with_runs_dir(args: list[str]) -> list[str]:
    if args[:1] == ["search"] and "--runs-dir" not in args:
        return [*args, "--runs-dir", "runs"]
    return list(args)


def params():
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case["xfail"], strict=True)] if "xfail" in case else []
        yield pytest.param(case, id=case["id"], marks=marks)


@pytest.mark.parametrize("case", params())
def test_bad_input_is_refused_with_one_line(case, tmp_path, request):
    make_files(tmp_path, case.get("files", {}), request)
    before = snapshot(tmp_path)
    try:
        code, out, err = nas(
            with_runs_dir(case["args"]),
            tmp_path,
            case.get("timeout", DEFAULT_TIMEOUT),
            memory_mib=case.get("memory_mib"),
            env=case.get("env"),
        )
    finally:
        for path in tmp_path.rglob("*"):  # let pytest clean up folders a case made unwritable
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
    assert "Traceback" not in err + out, err
    assert code == 2, f"exit code {code}; stderr:\n{err}"
    lines = err.strip().splitlines()
    skipped = case.get("skipped", 0)  # unreadable images named as they are skipped, before the error
    assert all(line.startswith("nas: skipped ") for line in lines[:skipped]), err
    lines = lines[skipped:]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("nas: error: "), lines[0]
    expect = case["expect"] if isinstance(case["expect"], list) else [case["expect"]]
    for fragment in expect:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert snapshot(tmp_path) == before, "a run directory (or another file) was created or changed"


# -- the corpus itself -----------------------------------------------------------------------------


def test_the_corpus_is_well_formed():
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    used = set()
    for case in CASES:
        assert set(case) <= CASE_KEYS and {"id", "args", "expect"} <= set(case), case["id"]
        assert all(isinstance(a, str) for a in case["args"]), f"{case['id']}: quote numbers in args"
        for spec in case.get("files", {}).values():
            if not isinstance(spec, str):
                assert len(spec) == 1 and next(iter(spec)) in GENERATORS, f"{case['id']}: {spec}"
                if "space" in spec:
                    assert (CORPUS / "spaces" / spec["space"]).is_file(), spec
                    used.add(spec["space"])
    unused = {p.name for p in (CORPUS / "spaces").glob("*.yaml")} - used
    assert not unused, f"space files no case uses: {sorted(unused)}"
