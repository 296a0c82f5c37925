"""A search's run directory, `runs/<name>/`, written so that a crash never leaves a torn file.

    config.json       every resolved setting
    space.yaml        a copy of the space file (a resumed search uses this copy)
    trials.jsonl      one line per finished trial, appended and fsynced as each finishes
    state.json        the controller's state and the trials running, after every ask and tell
    summary.json      the outcome, written when the search ends or stops
    best/model.keras  the winner, retrained on train + validation
    tune/             Ray Tune's own experiment files
    .lock             held (flock) by the process running the search

JSON files are replaced atomically (write a temporary file, fsync, rename).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nas.errors import InputError


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    @property
    def name(self) -> str:
        return self.path.name

    def check_new(self) -> None:
        if self.path.exists():
            raise InputError(f"name: run {self.path} already exists, expected a new name (or --resume to continue it)")
        existing = next(p for p in self.path.parents if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(
                f"runs_dir: {existing} is {'not a folder' if not existing.is_dir() else 'not writable'}; "
                f"expected a folder you can write to"
            )

    def check_existing(self) -> None:
        if not self.file("config.json").is_file():
            raise InputError(
                f"resume: no run {self.name!r} in {self.path.parent} (no config.json there), "
                f"expected the name of an earlier search"
            )

    def lock(self) -> None:
        """Takes the run for this process, or refuses naming the process that holds it. The lock is
        an flock, so one held by a killed process is free again and simply taken over."""
        self._lock_fd = os.open(self.file(".lock"), os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._lock_fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self._lock_fd)
            self._lock_fd = None
            raise InputError(
                f"name: run {self.name!r} is in use by {holder}; expected it to be free "
                f"(wait for that search or stop it)"
            ) from None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(
            self._lock_fd,
            f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            0,
        )

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)  # releases the flock; the file stays (removing it would race a new holder)
            self._lock_fd = None

    def create(self, files: dict[str, str] | None = None) -> None:
        """Creates the directory with its first files (config.json, say), all at once: it is built
        under a temporary name and renamed, so a run directory never exists without them. Refuses
        to reuse an existing run."""
        self.check_new()
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(
                f"runs_dir: {parent}: cannot create it ({e.strerror}); expected a folder you can write to"
            ) from None
        if not os.access(parent, os.W_OK):
            raise InputError(f"runs_dir: {parent}: not writable, expected a directory you can write to")
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.name}."))
        try:
            staging.chmod(0o777 & ~_UMASK)
            for name, text in (files or {}).items():
                write_atomic(staging / name, text)
            try:
                os.rename(staging, self.path)  # fails if the name was taken since check_new()
            except OSError:
                self.check_new()
                raise
            fsync_path(parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def file(self, name: str) -> Path:
        return self.path / name

    @staticmethod
    def json_text(data: Any) -> str:
        return json.dumps(data, indent=2, default=str) + "\n"

    def write_json(self, name: str, data: Any) -> None:
        write_atomic(self.file(name), self.json_text(data))

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.file(name), text)

    def write_bytes(self, name: str, data: bytes) -> None:
        write_atomic(self.file(name), data)

    def read_saved(self, name: str, required: Iterable[str] = ()) -> dict[str, Any]:
        """A JSON object the run wrote, or an InputError naming the file and what is wrong with it."""
        path = self.file(name)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise InputError(f"{path}: cannot read it ({e.strerror}); expected the run's {name}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            where = f"line {e.lineno}: " if isinstance(e, json.JSONDecodeError) else ""
            raise InputError(f"{path}: {where}not valid JSON; expected the run's {name} as nas wrote it") from None
        missing = [key for key in required if not isinstance(data, dict) or key not in data]
        if missing:
            raise InputError(f"{path}: no {', '.join(missing)}; expected the run's {name} as nas wrote it")
        return data

    def append_trial(self, record: dict[str, Any]) -> None:
        """Appends one line and fsyncs it: a finished trial survives a crash of the driver."""
        append_json_line(self.file("trials.jsonl"), record)

    def trials(self, repair: bool = False) -> list[dict[str, Any]]:
        """The finished trials. A last line torn by a crash is dropped, and with `repair` removed
        from the file (so that the next append starts a line of its own)."""
        path = self.file("trials.jsonl")
        if not path.exists():
            return []
        text = path.read_text()
        lines = text.splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise InputError(f"{path}: line {number}: not a JSON record, expected one trial per line") from None
        if repair and (len(records) < len(lines) or (text and not text.endswith("\n"))):
            write_atomic(path, "".join(json.dumps(r, default=str) + "\n" for r in records))
        return records


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes files private; these are ordinary results
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def append_json_line(path: Path, record: Any) -> None:
    """Appends `record` as one line of JSON and fsyncs it: it survives a crash of this process."""
    with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def fsync_path(path: Path) -> None:
    """Flushes a file, or a folder (which makes a rename in it durable, after a power cut too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
