"""What the library reports as it works, through one `Reporter`: a search's settings, one line per
finished trial (with a live status in a terminal or a notebook), the final table; an export's steps.

    with progress.reporting(progress.Reporter()):   # rich on the terminal or in a notebook (the default)
        run_search(config)
    with progress.reporting(progress.SILENT):       # nothing printed (nas.search(..., progress=False))
        run_search(config)
    progress.reporter().line("...")                # where the library prints

The reporter in effect is a context variable: `nas.search` and the CLI set it around a command, and
the engine, export and run listing print through it, never to a console of their own.
"""

from __future__ import annotations

import contextvars
import io
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from nas.trial_record import TrialRecord, top_trials


class Reporter:
    """Prints with rich: to the terminal, or in Jupyter as the cell's output. `quiet` prints nothing."""

    def __init__(self, quiet: bool = False):
        self.console = Console(highlight=False, soft_wrap=True, quiet=quiet)

    def line(self, text: Any) -> None:
        """A line of rich markup, or any rich renderable (a table)."""
        self.console.print(text)

    def text(self, text: str) -> None:
        """A line of plain text (paths and names as they are: no markup)."""
        self.console.print(text, markup=False)

    def warning(self, text: str) -> None:
        self.console.print(f"[yellow]warning[/yellow]: {text}")


class Recorder(Reporter):
    """Keeps the lines instead of printing them: for tests, or a caller that shows them its own way."""

    def __init__(self):
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def line(self, text: Any) -> None:
        self.lines.append(text if isinstance(text, str) else repr(text))

    text = line

    def warning(self, text: str) -> None:
        self.lines.append(f"warning: {text}")


SILENT = Reporter(quiet=True)
_DEFAULT = Reporter()
_current: ContextVar[Reporter | None] = ContextVar("nas_reporter", default=None)


def reporter() -> Reporter:
    """The reporter in effect (a rich console unless `reporting` set another)."""
    return _current.get() or _DEFAULT


@contextmanager
def reporting(chosen: Reporter):
    """Reports through `chosen` within the block."""
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def print_settings(settings: dict[str, Any]) -> None:
    width = max(len(k) for k in settings)
    for key, value in settings.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        reporter().line(f"  {key:<{width}}  {value}")


class TrialPrinter:
    """One line per finished trial: what it scored, the best so far, time spent and left. Below them
    in a terminal, and above them in Jupyter, a live status: a bar of trials done / budget, running,
    failed, best so far, elapsed time and ETA."""

    def __init__(self, budget: int, running: Callable[[], int] | None = None):
        self.budget = budget
        self.running = running  # how many trials run now (asked at each refresh)
        self.start = time.perf_counter()
        self.done = 0
        self.failed = 0
        self.best: TrialRecord | None = None
        self.earlier = 0  # trials an earlier session of a resumed search finished
        self.last: float | None = None  # when this session's last trial ended
        self.bar: Progress | None = None
        self.task = None
        self.notebook: _NotebookStatus | None = None

    @contextmanager
    def live(self):
        """Shows the live status while the search runs: in a terminal, a line rich redraws below the
        trials' lines and removes at the end; in Jupyter, a display updated in place, which stays with
        the final status. Nothing where output goes to a file or a pipe, or nowhere."""
        console = reporter().console
        if console.quiet or not (console.is_terminal or console.is_jupyter):
            yield
            return
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            _StatusColumn(self),
            _TimeColumn(self),
            console=console,
            transient=True,
            auto_refresh=not console.is_jupyter,
        )
        self.task = self.bar.add_task("search", total=self.budget, completed=self.done)
        try:
            if console.is_jupyter:
                with _NotebookStatus(self.bar, console.width) as self.notebook:
                    yield
            else:
                with self.bar:
                    yield
        finally:
            self.bar = self.notebook = None

    def status(self) -> str:
        running = f"running {self.running()}  " if self.running else ""
        best = f"best {self.best.reward:.4f} (#{self.best.trial})" if self.best else "best -"
        return f"{running}failed {self.failed}  {best}"

    def elapsed(self) -> str:
        return duration(time.perf_counter() - self.start)

    def eta(self) -> float | None:
        """Seconds left at this session's pace, counted down from the last trial's end (None before
        this session's first trial ends)."""
        session = self.done - self.earlier
        if session <= 0 or self.last is None:
            return None
        left = (self.last - self.start) / session * max(0, self.budget - self.done)
        return max(0.0, left - (time.perf_counter() - self.last))

    def resume(self, records: list[TrialRecord]) -> None:
        """Counts the trials of earlier sessions (the ETA uses this session's pace)."""
        for record in records:
            self._count(record)
        self.earlier = self.done

    def _count(self, record: TrialRecord) -> None:
        self.done += 1
        if record.completed:
            if self.best is None or record.reward > self.best.reward:
                self.best = record
        elif record.failed:
            self.failed += 1

    def __call__(self, record: TrialRecord) -> None:
        self._count(record)
        self.last = time.perf_counter()
        m = record.metrics
        if record.completed:
            what = f"val {m.val_accuracy:.4f}  params {m.params:>9,}  fit {m.fit_seconds:5.1f}s"
        elif record.status == "stopped":
            what = f"val {m.val_accuracy:.4f}  [yellow]stopped early[/yellow] after {m.epochs} epoch(s)"
        else:
            what = f"[red]failed[/red]: {record.error}"
        best = f"best {self.best.reward:.4f} (#{self.best.trial})" if self.best else "best -"
        reporter().line(
            f"[{self.done:>{len(str(self.budget))}}/{self.budget}] trial {record.trial:<4} {what} | "
            f"{best}  failed {self.failed}  elapsed {self.elapsed()}  eta {duration(self.eta() or 0)}"
        )
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
        if self.notebook is not None:
            self.notebook.refresh()


class _StatusColumn(ProgressColumn):
    def __init__(self, printer: TrialPrinter):
        super().__init__()
        self.printer = printer

    def render(self, task) -> Text:
        return Text(self.printer.status())


class _TimeColumn(ProgressColumn):
    """Time spent and left, as the trials' lines give them (rich's own ETA column estimates the pace
    from the last 30 s only, and shows nothing while trials take longer than that)."""

    def __init__(self, printer: TrialPrinter):
        super().__init__()
        self.printer = printer

    def render(self, task) -> Text:
        eta = self.printer.eta()
        return Text(f"elapsed {self.printer.elapsed()}  eta {duration(eta) if eta is not None else '-'}")


class _NotebookStatus:
    """The live status in Jupyter. rich's own live display needs ipywidgets there (a widget that
    frontends without the widget manager cannot show, and a notebook saved without its state
    loses); instead, the bar is rendered to HTML and text and shown as one output that IPython's
    display_id updates in place: once a second from a thread of its own, and at each trial."""

    def __init__(self, bar: Progress, width: int, interval: float = 1.0):
        self.bar, self.width, self.interval = bar, width, interval
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.handle = None
        self.thread: threading.Thread | None = None

    def render(self) -> dict[str, str]:
        from rich.jupyter import JUPYTER_HTML_FORMAT

        console = Console(
            file=io.StringIO(),
            record=True,
            width=self.width,
            force_jupyter=False,
            force_terminal=True,
            color_system="truecolor",
        )
        console.print(self.bar.get_renderable())
        return {
            "text/plain": console.export_text(clear=False).rstrip("\n"),
            "text/html": console.export_html(inline_styles=True, code_format=JUPYTER_HTML_FORMAT),
        }

    def refresh(self) -> None:
        with self.lock:
            if self.handle is None:
                return
            try:
                self.handle.update(self.render(), raw=True)
            except Exception:  # noqa: BLE001 - a status that cannot be shown must never stop a search
                self.handle = None  # the trials' lines go on

    def __enter__(self) -> _NotebookStatus:
        from IPython.display import display

        self.handle = display(self.render(), raw=True, display_id=True)
        # In the caller's context: ipykernel finds there which cell the updates belong to.
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._run,), name="nas-status", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.refresh()

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        self.refresh()  # the final status stays in the notebook


def print_top(
    records: list[TrialRecord], test_accuracy: float | None, n: int = 5, ensemble: Sequence[int] = ()
) -> None:
    """The best `n` trials as a table, then the retrained winner's test accuracy (or, given the
    `ensemble`'s trials, the ensemble's)."""
    completed = top_trials(records, n)
    # The reward is the validation accuracy unless the objective weighs in a cost (nas.objective).
    shaped = any(r.reward != r.metrics.val_accuracy for r in completed)
    table = Table(title=f"Top {len(completed)} architectures", title_justify="left")
    for column in ("trial", *(["reward"] if shaped else []), "val acc", "params", "fit s", "architecture"):
        table.add_column(column, justify="right" if column != "architecture" else "left")
    for r in completed:
        reward = [f"{r.reward:.4f}"] if shaped else []
        table.add_row(
            str(r.trial),
            *reward,
            f"{r.metrics.val_accuracy:.4f}",
            f"{r.metrics.params:,}",
            f"{r.metrics.fit_seconds:.1f}",
            describe(r.values),
        )
    reporter().line(table)
    if test_accuracy is not None:
        which = (
            f"Ensemble of trials {', '.join(map(str, ensemble))} (retrained, probabilities averaged)"
            if len(ensemble) > 1
            else f"Winner (trial {completed[0].trial}) retrained"
        )
        reporter().line(f"{which}: test accuracy [bold]{test_accuracy:.4f}[/bold]")


def describe(values: dict[str, Any], limit: int = 160) -> str:
    """A short text of an architecture's decisions; skip connections as `layer<-inputs`."""
    layers: dict[str, list[str]] = {}
    parts = []
    for name, value in values.items():
        layer, _, key = name.partition(".")
        if layer.startswith("layer") and key:
            if key.startswith("input"):
                if value:
                    layers.setdefault(layer, []).append("<" + key[5:])
            else:
                layers.setdefault(layer, []).append(str(value))
        else:
            parts.append(f"{name}={value}")
    parts += [f"{layer[5:]}:" + "/".join(items) for layer, items in layers.items()]
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"
