"""A search's run directory, `runs/<name>/`, written so that a crash never leaves a torn file.

    config.json       every resolved setting
    space.yaml        a copy of the space file
    trials.jsonl      one line per finished trial, appended and fsynced as each finishes
    controller.json   the controller's state after its latest tell
    summary.json      the outcome, written at the end
    best/model.keras  the winner, retrained on train + validation
    tune/             Ray Tune's own experiment files

JSON files are replaced atomically (write a temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from nas.errors import InputError


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    @property
    def name(self) -> str:
        return self.path.name

    def check_new(self) -> None:
        if self.path.exists():
            raise InputError(f"--name: run {self.path} already exists, expected a new name")

    def create(self) -> None:
        """Creates the directory; refuses to reuse an existing run."""
        self.check_new()
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"--runs-dir: {parent}: cannot create it ({e.strerror})") from None
        if not os.access(parent, os.W_OK):
            raise InputError(f"--runs-dir: {parent}: not writable, expected a directory you can write to")
        try:
            self.path.mkdir()
        except FileExistsError:  # created since check_new(): another search took the name
            self.check_new()

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        write_atomic(self.file(name), json.dumps(data, indent=2, default=str) + "\n")

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.file(name), text)

    def write_bytes(self, name: str, data: bytes) -> None:
        write_atomic(self.file(name), data)

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    def append_trial(self, record: dict[str, Any]) -> None:
        """Appends one line and fsyncs it: a finished trial survives a crash of the driver."""
        with open(self.file("trials.jsonl"), "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def trials(self) -> list[dict[str, Any]]:
        """The finished trials; a last line torn by a crash is dropped."""
        path = self.file("trials.jsonl")
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
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


def top_trials(records: Iterable[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    completed = [r for r in records if r["status"] == "completed"]
    return sorted(completed, key=lambda r: (-r["reward"], r["trial"]))[:n]
