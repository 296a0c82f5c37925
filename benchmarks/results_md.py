"""Writes one benchmark's section of benchmarks/RESULTS.md: machine, date, command and figures.

    write_section("Course ladder", command="python benchmarks/course_ladder.py", body=markdown_table)

A section is replaced when its benchmark runs again; the others are kept.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is written by its script (see README.md here); rerun the script to refresh it.\n"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def write_section(title: str, command: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = (f"## {title}\n\n- **Date:** {datetime.now():%Y-%m-%d %H:%M}\n- **Machine:** {machine()}\n"
               f"- **Command:** `{command}`\n\n{body.strip()}\n")
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def command_line() -> str:
    return " ".join(["python", *sys.argv])
