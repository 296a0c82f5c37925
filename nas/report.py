"""The run report: one self-contained HTML page of what a search found, from its run directory alone.

    path = write_report("runs/cnn10-1")      # -> runs/cnn10-1/report.html, plots in runs/cnn10-1/report/
    path = write_report("cnn10-1", runs_dir="runs")
    nas report cnn10-1                       # the same from the shell; `nas search` writes it as it ends

The page shows the reward of every trial and the best so far (failed trials marked); the REINFORCE
controller's entropy, mean reward and baseline per policy update (when state.json logs them);
validation accuracy against parameter count with the Pareto front; the top 10 architectures'
decoded choices; a diagram of the winner's layers and skip connections; the winner's test accuracy
and the run's settings. Each plot is also a PNG in `report/`; in the page they are base64 data URIs
and nothing is loaded from elsewhere, so the file can be mailed or archived alone. It works for a
run that is running, interrupted, stopped or has only failed trials (what is missing is said).

Plots are drawn on matplotlib's Agg canvas through `Figure` (no pyplot, no display, no global
state); neither TensorFlow nor Ray is imported. Every value from the run's files (class, space and
run names, decisions, errors, settings) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.errors import InputError
from nas.run import Run, find_run, read_run
from nas.trial_record import TrialRecord, is_number, top_trials

PLOTS = ("rewards", "controller", "supernet", "pareto", "winner", "confusion")  # report/<name>.png
TOP = 10  # architectures in the table
MAX_FAILED_SHOWN = 20

BLUE, RED, ORANGE, GREEN, GREY = "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#7f7f7f"
SOURCE_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)  # matplotlib's tab10


def write_report(run: str | Path, runs_dir: str | Path = "runs", status: str | None = None) -> Path:
    """Writes RUN/report.html and RUN/report/*.png from the run's files; returns the page's path.
    `status` overrides the run's status: a search reporting on itself as it ends still holds the
    run's lock, which would read as `running`. Raises InputError when the run's files cannot be
    read as nas wrote them."""
    data = read_run(find_run(run, runs_dir))
    if status:
        data.status = status
    rundir = data.rundir
    pngs = {name: png for name, png in _plots(data).items() if png is not None}
    try:
        for name in PLOTS:
            path = rundir.file(f"report/{name}.png")
            if name in pngs:
                rundir.write_bytes(f"report/{name}.png", pngs[name])
            elif path.exists():
                path.unlink()  # from an earlier report: it would no longer match the page
        rundir.write_text("report.html", render_html(data, pngs))
    except OSError as e:
        raise InputError(
            f"{e.filename or rundir.path}: cannot write the report ({e.strerror}); expected a run "
            "directory you can write to"
        ) from None
    return rundir.file("report.html")


# -- plots ------------------------------------------------------------------------------------------


def _plots(data: Run) -> dict[str, bytes | None]:
    return {
        "rewards": rewards_png(data),
        "controller": controller_png(data),
        "supernet": supernet_png(data),
        "pareto": pareto_png(data),
        "winner": winner_png(data),
        "confusion": confusion_png(data),
    }


def _figure(width: float, height: float, margins: tuple[float, float, float, float] = (0.8, 0.3, 0.55, 0.45)):
    """A figure of width x height inches at 100 dpi, its axes inset by margins (left, right, bottom,
    top) in inches: fixed margins, as matplotlib's layout engines cost more than the drawing."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    left, right, bottom, top = margins
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _shaped(data: Run) -> bool:
    """Whether the reward differs from the validation accuracy (a cost-weighted objective)."""
    return any(r.reward != r.metrics.val_accuracy for r in data.completed)


def rewards_png(data: Run) -> bytes | None:
    """Each trial's reward by trial number, failed trials as red crosses, and the best so far."""
    if not data.trials:
        return None
    fig = _figure(10, 3.6)
    ax = fig.add_subplot()
    ordered = sorted(data.trials, key=lambda r: r.trial)
    done = [r for r in ordered if r.completed]
    failed = [r for r in ordered if r.failed]
    stopped = [r for r in ordered if r.status == "stopped"]
    if stopped:
        ax.scatter(
            [r.trial for r in stopped],
            [r.reward for r in stopped],
            s=22,
            color="#999999",
            zorder=3,
            label=f"stopped early ({len(stopped)}; at their last epoch)",
        )
    if done:
        ax.scatter([r.trial for r in done], [r.reward for r in done], s=22, color=BLUE, zorder=3, label="completed")
        best, xs, ys = -math.inf, [], []
        for r in ordered:
            if r.completed:
                best = max(best, r.reward)
            if best > -math.inf:
                xs.append(r.trial)
                ys.append(best)
        ax.step(xs, ys, where="post", color=GREEN, linewidth=2, label="best so far", zorder=2)
        winner = data.best
        ax.scatter(
            [winner.trial],
            [winner.reward],
            s=160,
            marker="*",
            color=ORANGE,
            edgecolor="black",
            zorder=4,
            label=f"best: trial {winner.trial}",
        )
    if failed:
        ax.scatter(
            [r.trial for r in failed],
            [r.reward for r in failed],
            s=40,
            marker="x",
            color=RED,
            zorder=3,
            label=f"failed ({len(failed)}; at the reward the controller was told)",
        )
    ax.set_xlim(0.5, max(data.config["budget"], ordered[-1].trial) + 0.5)  # the whole budget: how far it got
    ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    ax.set_xlabel("trial")
    ax.set_ylabel("reward" if _shaped(data) else "reward (validation accuracy)")
    ax.grid(alpha=0.3)
    _legend_above(ax)
    return _png(fig)


def _legend_above(ax) -> None:
    """The legend in a row above the plot, where it hides no point."""
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=4, fontsize=9, frameon=False, borderaxespad=0)


def controller_log(data: Run) -> list[dict[str, Any]]:
    """The controller's policy updates from state.json (REINFORCE logs one per update), checked."""
    log = ((data.state or {}).get("controller") or {}).get("log") if isinstance(data.state, dict) else None
    if not isinstance(log, list):
        return []
    keys = ("entropy", "mean_reward", "baseline")
    return [
        e
        for e in log
        if isinstance(e, dict)
        and all(isinstance(e.get(k), (int, float)) and not isinstance(e.get(k), bool) for k in keys)
    ]


def controller_png(data: Run) -> bytes | None:
    """The policy's entropy, and the batch's mean reward against the baseline, per update."""
    log = controller_log(data)
    if not log:
        return None
    updates = list(range(1, len(log) + 1))
    fig = _figure(10, 3.2, margins=(0.6, 0.2, 0.55, 0.3))
    left, right = fig.subplots(1, 2, gridspec_kw={"wspace": 0.15})
    left.plot(updates, [e["entropy"] for e in log], color=BLUE, marker="o" if len(log) < 30 else None, markersize=3)
    # From zero: a change of a thousandth must not look like a collapse.
    left.set_ylim(0, max(1e-9, max(e["entropy"] for e in log)) * 1.08)
    left.set_title("policy entropy (nats, summed over the decisions)", fontsize=10)
    left.set_xlabel("policy update")
    right.plot(
        updates,
        [e["mean_reward"] for e in log],
        color=BLUE,
        marker="o" if len(log) < 30 else None,
        markersize=3,
        label="mean reward of the batch",
    )
    right.plot(updates, [e["baseline"] for e in log], color=ORANGE, label="baseline (moving average)")
    right.set_title("reward and baseline", fontsize=10)
    right.set_xlabel("policy update")
    right.legend(fontsize=9, loc="best")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xlim(0.5, len(log) + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    return _png(fig)


def supernet_history(data: Run) -> list[dict[str, Any]]:
    """An enas run's supernet epochs (supernet/history.json), checked; [] for other runs."""
    try:
        history = json.loads(data.rundir.file("supernet/history.json").read_text())
    except (OSError, ValueError):
        return []
    keys = ("epoch", "loss", "reward_mean")
    return (
        [e for e in history if isinstance(e, dict) and all(is_number(e.get(k)) for k in keys)]
        if isinstance(history, list)
        else []
    )


def supernet_finalists(data: Run) -> list[dict[str, Any]]:
    """The finalists' shared-weight and stand-alone validation accuracy, from summary.json."""
    rows = ((data.summary or {}).get("supernet") or {}).get("finalists") or []
    return [r for r in rows if isinstance(r, dict) and is_number(r.get("shared_accuracy"))]


def supernet_png(data: Run) -> bytes | None:
    """The supernet's training loss and the controller's mean reward per epoch; beside them each
    finalist's shared-weight accuracy against its accuracy trained from scratch."""
    history = supernet_history(data)
    if not history:
        return None
    fig = _figure(10, 3.2, margins=(0.6, 0.2, 0.55, 0.3))
    left, right = fig.subplots(1, 2, gridspec_kw={"wspace": 0.4})
    epochs = [e["epoch"] for e in history]
    left.plot(epochs, [e["loss"] for e in history], color=BLUE, marker="o", markersize=3, label="training loss")
    left.set_xlabel("supernet epoch")
    left.set_title("supernet: training loss (blue), mean reward (orange)", fontsize=10)
    twin = left.twinx()
    twin.plot(epochs, [e["reward_mean"] for e in history], color=ORANGE, marker="o", markersize=3)
    left.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    left.grid(alpha=0.3)
    finalists = [r for r in supernet_finalists(data) if is_number(r.get("val_accuracy"))]
    if finalists:
        right.scatter([r["shared_accuracy"] for r in finalists], [r["val_accuracy"] for r in finalists], color=BLUE)
        for r in finalists:
            right.annotate(
                f"#{r['trial']}",
                (r["shared_accuracy"], r["val_accuracy"]),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
        right.set_xlabel("shared-weight validation accuracy")
        right.set_ylabel("trained from scratch")
        right.grid(alpha=0.3)
    else:
        right.axis("off")
        right.text(0.5, 0.5, "no finalist trained yet", ha="center", va="center", color=GREY)
    right.set_title("finalists", fontsize=10)
    return _png(fig)


def pareto_front(records: list[TrialRecord]) -> list[TrialRecord]:
    """The completed trials no other beats on both counts (fewer parameters and higher validation
    accuracy), by parameter count."""
    front, best = [], -math.inf
    for r in sorted(records, key=lambda r: (r.metrics.params, -r.metrics.val_accuracy, r.trial)):
        if r.metrics.val_accuracy > best:
            front.append(r)
            best = r.metrics.val_accuracy
    return front


def pareto_png(data: Run) -> bytes | None:
    """Validation accuracy against parameter count, the Pareto front joined and the winner starred."""
    done = data.completed
    if not done:
        return None
    fig = _figure(10, 4)
    ax = fig.add_subplot()
    ax.scatter(
        [r.metrics.params for r in done],
        [r.metrics.val_accuracy for r in done],
        s=22,
        color=BLUE,
        alpha=0.7,
        label="completed trial",
        zorder=2,
    )
    front = pareto_front(done)
    ax.step(
        [r.metrics.params for r in front],
        [r.metrics.val_accuracy for r in front],
        where="post",
        color=ORANGE,
        linewidth=1.5,
        zorder=3,
    )
    ax.scatter(
        [r.metrics.params for r in front],
        [r.metrics.val_accuracy for r in front],
        s=60,
        facecolor="none",
        edgecolor=ORANGE,
        linewidth=2,
        zorder=4,
        label=f"Pareto front ({len(front)}: none smaller and more accurate)",
    )
    winner = data.best
    ax.scatter(
        [winner.metrics.params],
        [winner.metrics.val_accuracy],
        s=180,
        marker="*",
        color=ORANGE,
        edgecolor="black",
        zorder=5,
        label=f"best reward: trial {winner.trial}",
    )
    for r in front if len(front) <= 12 else ():  # beyond a dozen, labels would only hide each other
        ax.annotate(
            f"#{r.trial}",
            (r.metrics.params, r.metrics.val_accuracy),
            fontsize=8,
            xytext=(4, -10),
            textcoords="offset points",
            color="#444444",
        )
    params = [r.metrics.params for r in done]
    if min(params) > 0 and max(params) / min(params) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    _legend_above(ax)
    return _png(fig)


# -- the winner's diagram --------------------------------------------------------------------------


def winner_spec(data: Run) -> dict[str, Any] | None:
    """The winner as the builder reads it, from the run's copy of its space file; None when the
    copy is missing or no longer fits the trial (the diagram then lists the decoded values)."""
    best = data.best
    if best is None:
        return None
    try:
        space = data.space()
        return space.resolve(space.from_json(best.arch))
    except Exception:  # noqa: BLE001 - a drawing of the values is still a fair picture of the winner
        return None


def winner_nodes(data: Run) -> tuple[list[str], list[tuple[int, int]], list[int]]:
    """The winner as boxes left to right (labels), the edges between them (index pairs), and the
    boxes after which height and width halve. Conv spaces: image, one box per layer (kernel and
    filters), classifier; a layer's inputs are its edges (none: the image), and layers that feed
    nothing feed the classifier. Other families: a simple stack."""
    best = data.best
    spec = winner_spec(data) or {}
    layers = spec.get("layers") if isinstance(spec.get("layers"), list) else None
    family = spec.get("family")
    if family == "conv" and layers:
        nodes = (
            ["image"]
            + [
                f"layer {i}\n{lay['kernel_height']}×{lay['kernel_width']}\n{lay['filters']} filters"
                for i, lay in enumerate(layers)
            ]
            + ["classifier"]
        )
        edges, fed = [], set()
        for i, layer in enumerate(layers):
            sources = layer.get("inputs") or []
            edges += [(j + 1, i + 1) for j in sources] if sources else [(0, i + 1)]
            fed.update(sources)
        edges += [(i + 1, len(layers) + 1) for i in range(len(layers)) if i not in fed]
        reduce = [i + 1 for i in spec.get("reduce_after", []) if i < len(layers)]
        return nodes, edges, reduce
    if family == "dense" and layers:
        middle = [
            f"dense {lay.get('units')}\n{lay.get('activation', '')}"
            + (f"\ndropout {lay['dropout']}" if lay.get("dropout") else "")
            for lay in layers
        ]
    elif family == "resnet":
        width, middle = (
            spec.get("width", 16),
            [f"stem\n{spec.get('kernel', 3)}×{spec.get('kernel', 3)} conv\n{spec.get('stem_filters')} filters"],
        )
        for stage in range(int(spec.get("stages", 1))):
            middle.append(f"stage {stage + 1}\n{spec.get('blocks')}× {spec.get('block')}\n{width * 2**stage} filters")
    elif family == "linear":  # softmax regression: the classifier is the model
        return ["image", f"classifier\nlinear, softmax\nL2 {spec.get('l2', 0)}"], [(0, 1)], []
    else:  # no spec: the decoded decisions, a layer per box
        groups: dict[str, list[str]] = {}
        for name, value in best.values.items() if best else ():
            layer, _, key = str(name).partition(".")
            if layer.startswith("layer") and key and not key.startswith("input"):
                groups.setdefault(layer, []).append(f"{key} {value}")
        middle = ["\n".join(items[:4]) for items in groups.values()] or ["(no layers)"]
    head = spec.get("head", {}).get("dropout") if isinstance(spec.get("head"), dict) else None
    nodes = ["image", *middle, "classifier" + (f"\ndropout {head}" if head else "")]
    return nodes, [(i, i + 1) for i in range(len(nodes) - 1)], []


def confusion_png(data: Run) -> bytes | None:
    """The retrained winner's confusion matrix on the test split: true classes down, predicted
    across, each cell's count written in it while there are at most 30 classes."""
    evaluation = data.evaluation
    if evaluation is None:
        return None
    import numpy as np

    matrix = np.array(evaluation["confusion_matrix"])
    names = [name if len(name) <= 14 else name[:13] + "…" for name in evaluation["class_names"]]
    n = len(names)
    side = min(12.0, max(3.0, 0.45 * n))
    margin = 0.2 + 0.075 * max(len(name) for name in names)
    fig = _figure(side + margin + 0.3, side + margin + 0.3, (margin + 0.1, 0.2, margin + 0.1, 0.2))
    ax = fig.add_subplot()
    # Each row scaled to its class's images, so a rare class's errors show as well as a common one's.
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=90 if n > 6 or max(map(len, names)) > 6 else 0, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    colour = "white" if share[i, j] > 0.6 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
    return _png(fig)


def winner_png(data: Run) -> bytes | None:
    """Boxes for the winner's layers, left to right; skip connections arc above the boxes, edges
    from the image and to the classifier arc below, and dashed lines mark where the size halves."""
    if data.best is None:
        return None
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    nodes, edges, reduce = winner_nodes(data)
    n = len(nodes)
    # Inches, at 100 px each (a y unit is an inch too); the page shrinks what is wider than it.
    width = max(10.0, 0.9 * n) if reduce or any(b > a + 1 for a, b in edges) else max(3.0, 1.1 * n)
    half_w, half_h = 0.43, 0.6
    arcs = []  # (a, b, above, rad)
    for a, b in edges:
        if b > a + 1:
            above = 0 < a and b < n - 1  # between layers: a skip connection
            # Arcs rise with the distance they span, so nested skips stay apart.
            arcs.append((a, b, above, min(0.5, 0.9 / math.sqrt(b - a))))

    def rise(side: bool) -> float:
        """How far the highest arc on one side rises beyond the boxes, in y units (inches)."""
        return max((0.5 * rad * (b - a - 0.2) * width / n for a, b, above, rad in arcs if above == side), default=0)

    top, bottom = half_h + rise(True) + 0.2, -(half_h + max(rise(False), 0.3 if reduce else 0) + 0.2)
    fig = _figure(width, top - bottom, margins=(0, 0, 0, 0))
    ax = fig.add_subplot()
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(bottom, top)
    ax.axis("off")
    for i, label in enumerate(nodes):
        end = i in (0, n - 1)
        ax.add_patch(
            FancyBboxPatch(
                (i - half_w, -half_h),
                2 * half_w,
                2 * half_h,
                boxstyle="round,pad=0.02",
                facecolor="#eeeeee" if end else "#d9e8f6",
                edgecolor="#555555" if end else BLUE,
            )
        )
        ax.text(i, 0, label, ha="center", va="center", fontsize=9, linespacing=1.35)
    for i in reduce:
        ax.plot([i + 0.5, i + 0.5], [-half_h - 0.1, half_h + 0.1], linestyle="--", color=GREY, linewidth=1)
        ax.text(i + 0.5, -half_h - 0.15, "size ÷2", ha="center", va="top", fontsize=8, color=GREY)
    for a, b in edges:
        if b == a + 1:
            ax.add_patch(
                FancyArrowPatch(
                    (a + half_w, 0),
                    (b - half_w, 0),
                    arrowstyle="-|>",
                    mutation_scale=10,
                    color="#333333",
                    linewidth=1,
                    shrinkA=0,
                    shrinkB=0,
                )
            )
    for a, b, above, rad in arcs:
        y = half_h if above else -half_h
        color = SOURCE_COLORS[(a - 1) % len(SOURCE_COLORS)] if above else GREY  # one colour per feeding layer
        ax.add_patch(
            FancyArrowPatch(
                (a + 0.1, y),
                (b - 0.1, y),
                connectionstyle=f"arc3,rad={-rad if above else rad}",
                arrowstyle="-|>",
                mutation_scale=10,
                color=color,
                linewidth=1,
                shrinkA=0,
                shrinkB=0,
            )
        )
    return _png(fig)


# -- the page ---------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e("-" if value is None else value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _value(value: Any) -> str:
    """A setting's value as text: mappings and lists as compact JSON."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return "-" if value is None else str(value)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.sub { color: #666; margin-top: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 0.7em; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.9em; background: #fafafa; }
.card .k { color: #666; font-size: 0.85em; } .card .v { font-size: 1.35em; font-weight: 600; }
.status-finished { color: #2a7d2a; } .status-interrupted, .status-stopped { color: #b36b00; }
.status-failed, .status-killed { color: #c0392b; } .status-running { color: #1f6fb4; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; white-space: nowrap; }
td.layer { white-space: nowrap; } td.layer .in { color: #1f6fb4; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff6e5; }
.scroll { overflow-x: auto; } .note { color: #666; font-size: 0.9em; }
.settings td:first-child { white-space: nowrap; font-family: ui-monospace, Menlo, Consolas, monospace; }
.settings td:last-child { word-break: break-word; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; }
"""


def render_html(data: Run, pngs: dict[str, bytes]) -> str:
    """The report page for a run, given its plots as PNG bytes (by name, as in PLOTS)."""
    rundir, summary, best = data.rundir, data.summary or {}, data.best
    test = data.test_accuracy
    parts = [
        f"<h1>nas run {_e(rundir.name)}</h1>",
        f'<p class="sub">space <b>{_e(data.space_name)}</b> · controller {_e(data.config.get("controller", "?"))}'
        f" · reward {_e(data.config.get('reward', data.config.get('objective', 'accuracy')))}"
        f" · data {_e(data.config.get('data', '?'))}{_skipped(data)}"
        f"{f' · started {data.started:%Y-%m-%d %H:%M}' if data.started else ''}</p>",
    ]
    cards = [
        ("status", f'<span class="status-{_e(data.status)}">{_e(data.status)}</span>'),
        ("trials", f"{len(data.trials)} / {_e(data.config['budget'])}"),
        ("failed", str(len(data.failed))),
        *(
            [("stopped early", str(sum(r.status == "stopped" for r in data.trials)))]
            if any(r.status == "stopped" for r in data.trials)
            else []
        ),
        ("best val accuracy", _num(best.metrics.val_accuracy) if best else "-"),
        ("best trial", f"#{best.trial}" if best else "-"),
        ("test accuracy", _num(test) if test is not None else "-"),
    ]
    parts.append(
        '<div class="cards">'
        + "".join(f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in cards)
        + "</div>"
    )
    parts.append(f'<p class="note">{_e(_outcome(data))}</p>')

    parts.append("<h2>Reward per trial</h2>")
    parts.append(
        _img(pngs["rewards"], "reward per trial")
        if "rewards" in pngs
        else '<p class="note">No trial has finished yet.</p>'
    )
    log = controller_log(data)
    parts.append("<h2>Controller</h2>")
    if "controller" in pngs:
        updates = f"{len(log)} policy update{'s' if len(log) != 1 else ''}"
        parts.append(
            f'<p class="note">{updates}. Falling entropy means the policy is settling on its choices; '
            "the advantage of each update is its reward minus the baseline.</p>"
        )
        parts.append(_img(pngs["controller"], "controller entropy, mean reward and baseline per update"))
    elif data.config.get("strategy") == "enas":
        parts.append(
            '<p class="note">The controller learned from children scored with shared weights: its mean '
            "reward and entropy per supernet epoch are under Supernet below; the finalists it chose were "
            "trained from scratch as the trials above.</p>"
        )
    else:
        controller = data.config.get("controller", "?")
        parts.append(
            '<p class="note">'
            + (
                "No policy update yet."
                if controller == "reinforce"
                else f"The {_e(controller)} controller learns no policy, so there is no entropy to show."
            )
            + "</p>"
        )
    if data.config.get("strategy") == "enas":
        parts.append(_supernet_section(data, pngs))
    parts.append("<h2>Accuracy against size</h2>")
    parts.append(
        _img(pngs["pareto"], "validation accuracy against parameters")
        if "pareto" in pngs
        else '<p class="note">No trial completed, so there is nothing to compare.</p>'
    )
    parts.append(_top_table(data))
    parts.append("<h2>The winner</h2>")
    if best is None:
        parts.append('<p class="note">No trial completed: there is no winner.</p>')
    else:
        parts.append(
            f"<p>Trial {best.trial}: reward {_num(best.reward)}, validation accuracy "
            f"{_num(best.metrics.val_accuracy)}, {_num(best.metrics.params)} parameters. "
            + (
                _tested(data, test)
                if test is not None
                else "It was not retrained, so it has no test accuracy yet "
                f"(<code>nas search --name {_e(rundir.name)} --runs-dir {_e(rundir.path.parent)} --resume"
                f"</code> finishes the search; <code>nas export {_e(rundir.path)}</code> retrains it)."
            )
            + "</p>"
        )
        if "winner" in pngs:
            if _is_conv(data):
                parts.append(
                    '<p class="note">Boxes are layers, left to right. Coloured arcs above are skip '
                    "connections, one colour per feeding layer (a layer takes the concatenation of the "
                    "layers feeding it); grey arcs below come from the image (a layer fed by no layer) or "
                    "go to the classifier (layers that feed none).</p>"
                )
            parts.append(_img(pngs["winner"], "the winner's layers"))
    parts.append(_evaluation_section(data, pngs))
    parts.append(_failed_table(data))
    parts.append("<h2>Settings</h2>")
    parts.append(
        '<table class="settings">'
        + "".join(f"<tr><td>{_e(k)}</td><td>{_e(_value(v))}</td></tr>" for k, v in data.config.items())
        + "</table>"
    )
    if summary:
        keep = {k: v for k, v in summary.items() if k not in ("best", "final", "evaluation")}
        parts.append("<h3>summary.json</h3>")
        parts.append(
            '<table class="settings">'
            + "".join(f"<tr><td>{_e(k)}</td><td>{_e(_value(v))}</td></tr>" for k, v in keep.items())
            + "</table>"
        )
    parts.append(
        f'<p class="note">Written by <code>nas report</code> on {datetime.now():%Y-%m-%d %H:%M} from '
        f"{_e(rundir.path)}.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>nas run {_e(rundir.name)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(p for p in parts if p)
        + "\n</body></html>\n"
    )


def _skipped(data: Run) -> str:
    """How many unreadable images the search skipped in its data (config.json's skipped_images)."""
    skipped = data.config.get("skipped_images")
    n = len(skipped) if isinstance(skipped, list) else 0
    return f" ({n} unreadable image{'s' * (n != 1)} skipped)" if n else ""


def _tested(data: Run, test: float) -> str:
    """What the run's test accuracy is of: the winner retrained, or the ensemble it is part of."""
    ensemble = data.ensemble
    if not ensemble:
        return f"Retrained on train + validation, its test accuracy is <b>{_num(test)}</b>."
    members = data.summary["final"]["members"]
    alone = ", ".join(f"trial {m['trial']} {_num(m.get('test_accuracy'))}" for m in members)
    return (
        f"It and the next best were retrained on train + validation and the search returns the "
        f"ensemble of trials {', '.join(map(str, ensemble))}, which averages their probabilities: its "
        f"test accuracy is <b>{_num(test)}</b> (each alone: {alone})."
    )


def _evaluation_section(data: Run, pngs: dict[str, bytes]) -> str:
    """The retrained winner on the test split: headline metrics, the confusion matrix, the most
    confused pairs and the per-class table (nas.evaluation)."""
    evaluation = data.evaluation
    if evaluation is None:
        return ""
    headline = [
        f"accuracy <b>{_num(evaluation['accuracy'])}</b>",
        f"balanced accuracy <b>{_num(evaluation['balanced_accuracy'])}</b> (the mean of the classes' recalls)",
        f"macro F1 <b>{_num(evaluation['macro_f1'])}</b>",
        *[f"top-{k[3:].split('_')[0]} accuracy <b>{_num(v)}</b>" for k, v in evaluation.items() if k.startswith("top")],
    ]
    parts = [
        f"<h2>The {'ensemble' if data.ensemble else 'winner'} on the test split</h2>",
        f"<p>{evaluation['images']} test images, never seen in the search: " + ", ".join(headline) + ".</p>",
    ]
    if "confusion" in pngs:
        parts.append(
            '<p class="note">Confusion matrix: rows are the true classes, columns the predicted ones; each cell '
            "gives its images, its shade the share of its row.</p>"
        )
        parts.append(_img(pngs["confusion"], "confusion matrix of the winner on the test split"))
    if evaluation["most_confused"]:
        pairs = "".join(
            f"<li>{_e(c['true'])} taken for {_e(c['predicted'])}: {c['images']} image{'s' * (c['images'] != 1)}</li>"
            for c in evaluation["most_confused"]
        )
        parts.append(f"<h3>Most confused</h3><ul>{pairs}</ul>")
    rows = "".join(
        f"<tr><td>{_e(r['class'])}</td>"
        + "".join(f'<td class="n">{_num(r[k])}</td>' for k in ("precision", "recall", "f1"))
        + f'<td class="n">{r["support"]}</td></tr>'
        for r in evaluation["per_class"]
    )
    parts.append(
        "<h3>Per class</h3><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
        f"<th>test images</th></tr>{rows}</table>"
    )
    return "\n".join(parts)


def _supernet_section(data: Run, pngs: dict[str, bytes]) -> str:
    history = supernet_history(data)
    settings = data.config.get("weight_sharing") or {}
    head = "<h2>Supernet (weight sharing)</h2>"
    if not history:
        return head + '<p class="note">No supernet epoch has finished yet.</p>'
    last = history[-1]
    tau = ((data.summary or {}).get("supernet") or {}).get("kendall_tau")
    text = (
        f"{len(history)} of {_e(settings.get('supernet_epochs', '?'))} epochs; last training loss "
        f"{_num(last['loss'], 3)}, mean reward {_num(last['reward_mean'])}"
        + (f", policy entropy {_num(last['entropy'], 2)}" if is_number(last.get("entropy")) else "")
        + (
            f". Finalists' Kendall tau between shared-weight and stand-alone accuracy: {_num(tau, 2)}"
            if is_number(tau)
            else ""
        )
        + "."
    )
    return (
        head
        + f'<p class="note">{text}</p>'
        + (_img(pngs["supernet"], "supernet per epoch, finalists") if "supernet" in pngs else "")
    )


def _is_conv(data: Run) -> bool:
    spec = winner_spec(data)
    return bool(spec and spec.get("family") == "conv" and spec.get("layers"))


def _outcome(data: Run) -> str:
    return {
        "finished": "The search spent its budget and the winner was retrained and tested.",
        "running": "The search is still running: this is how it stood when the report was written.",
        "interrupted": "The search was interrupted (Ctrl-C); finished trials are kept and it can be resumed.",
        "stopped": "The search stopped early (too many failures in a row, or the winner's retraining failed).",
        "failed": "No child trained successfully.",
        "killed": "The search's driver died without writing a summary (killed); it can be resumed.",
    }.get(data.status, f"Status: {data.status}.")


def _top_table(data: Run) -> str:
    """The top architectures with their decoded choices: decisions made once as columns, then one
    column per layer listing that layer's choices and the layers feeding it."""
    top = top_trials(data.trials, TOP)
    plural = "s" if len(top) != 1 else ""
    head = f"<h2>Top {len(top)} architecture{plural}</h2>" if top else "<h2>Top architectures</h2>"
    if not top:
        return head + '<p class="note">No trial completed.</p>'
    shaped = _shaped(data)
    globals_: list[str] = []
    layer_keys: list[str] = []
    layers: list[str] = []
    for r in top:
        for name in r.values:
            layer, _, key = str(name).partition(".")
            if layer.startswith("layer") and layer[5:].isdigit() and key:
                if not key.startswith("input") and key not in layer_keys:
                    layer_keys.append(key)
                if layer not in layers:
                    layers.append(layer)
            elif name not in globals_:
                globals_.append(name)
    layers.sort(key=lambda layer: int(layer[5:]))
    columns = [
        "#",
        "trial",
        *(["reward"] if shaped else []),
        "val acc",
        "params",
        "fit s",
        *globals_,
        *(f"layer {layer[5:]}" for layer in layers),
    ]
    rows = []
    for rank, r in enumerate(top, 1):
        m, values = r.metrics, r.values
        cells = [
            f'<td class="n">{rank}</td>',
            f'<td class="n">{r.trial}</td>',
            *([f'<td class="n">{_num(r.reward)}</td>'] if shaped else []),
            f'<td class="n">{_num(m.val_accuracy)}</td>',
            f'<td class="n">{_num(m.params)}</td>',
            f'<td class="n">{_num(m.fit_seconds, 1)}</td>',
        ]
        cells += [f"<td>{_e(values[g]) if g in values else '-'}</td>" for g in globals_]
        for layer in layers:
            own = [str(values[f"{layer}.{k}"]) for k in layer_keys if f"{layer}.{k}" in values]
            inputs = [
                str(name)[len(layer) + 6 :]
                for name, v in values.items()
                if str(name).startswith(f"{layer}.input") and v is True
            ]
            fed = f'<br><span class="in">← {_e(",".join(inputs))}</span>' if inputs else ""
            text = _e(" · ".join(own)) + fed
            cells.append(f'<td class="layer">{text or "-"}</td>')
        rows.append(('<tr class="best">' if rank == 1 else "<tr>") + "".join(cells) + "</tr>")
    legend = ""
    if layers:
        legend = (
            '<p class="note">Each layer cell lists its '
            + _e(" · ".join(layer_keys) or "choices")
            + (
                ", then ← the earlier layers that feed it"
                if any(".input" in str(n) for r in top for n in r.values)
                else ""
            )
            + ".</p>"
        )
    return (
        head
        + legend
        + '<div class="scroll"><table><tr>'
        + "".join(f"<th>{_e(c)}</th>" for c in columns)
        + "</tr>"
        + "".join(rows)
        + "</table></div>"
    )


def _failed_table(data: Run) -> str:
    failed = sorted(data.failed, key=lambda r: r.trial)
    if not failed:
        return ""
    rows = "".join(
        f'<tr><td class="n">{r.trial}</td><td>{_e(str(r.error or "unknown error")[:300])}</td></tr>'
        for r in failed[:MAX_FAILED_SHOWN]
    )
    more = (
        f'<p class="note">and {len(failed) - MAX_FAILED_SHOWN} more in trials.jsonl</p>'
        if len(failed) > MAX_FAILED_SHOWN
        else ""
    )
    return f"<h2>Failed trials ({len(failed)})</h2><table><tr><th>trial</th><th>error</th></tr>{rows}</table>{more}"
