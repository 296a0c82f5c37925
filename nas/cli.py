"""The `nas` command.

    nas search --space cnn10 --budget 200
    nas spaces

Bad input ends with one line on stderr (`nas: error: ...`) and exit code 2; a search that had to
stop exits with 3.
"""

from __future__ import annotations

import math
import sys

import click

from controllers import NAMES as CONTROLLERS
from nas.config import SearchConfig
from nas.errors import MAX_SEED, USER_ERRORS, SearchInterrupted, SearchStopped


class ImageSize(click.ParamType):
    """`64` or `64x48` (height x width)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            size = tuple(int(v) for v in str(value).lower().split("x"))
        except ValueError:
            size = ()
        if len(size) not in (1, 2) or min(size) < 1:
            self.fail(f"got {value!r}, expected a positive size such as 64 or 64x48", param, ctx)
        return size if len(size) == 2 else (size[0], size[0])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="nas", prog_name="nas")
def main() -> None:
    """nas: neural architecture search for image classification on Ray Tune."""


@main.command()
@click.option("--space", default="cnn10", show_default=True, help="A built-in space (see `nas spaces`) or a space file.")
@click.option("--budget", type=click.IntRange(min=1), default=200, show_default=True, help="Child models to train.")
@click.option("--data", default="mnist5k", show_default=True,
              help="mnist5k, digits, a folder with a sub-folder per class, a CSV of path,label, or an .npz of x, y.")
@click.option("--image-size", type=ImageSize(), help="Resize folder and CSV images to SIZE (default 32).")
@click.option("--color-mode", type=click.Choice(["rgb", "grayscale"]), default="rgb", show_default=True,
              help="Channels of folder and CSV images.")
@click.option("--controller", type=click.Choice(CONTROLLERS), default="reinforce", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Concurrent trials [default: CPUs / cpus-per-trial].")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--gpus-per-trial", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--tpu", is_flag=True, help="Ask Ray for one TPU per trial.")
@click.option("--address", help="Join the Ray cluster at this address (HOST:6379) instead of starting Ray locally; "
                                "`local` starts a Ray of its own (on --resume: forgets the run's address).")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per child [default: the space's search_epochs].")
@click.option("--final-epochs", type=click.IntRange(min=1), help="Epochs to retrain the winner [default: the space's].")
@click.option("--name", help="Run name [default: <space>-<date>-<time>].")
@click.option("--runs-dir", default="runs", show_default=True, help="Where run directories are written.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--no-dashboard", is_flag=True, help="Do not start the Ray dashboard.")
@click.option("--max-failures", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop the search (exit code 3) after this many failed trials in a row.")
@click.option("--trial-timeout", type=click.FloatRange(min=0, max=10**7, min_open=True), metavar="SECONDS",
              callback=lambda ctx, param, value: _finite(value, ctx, param),
              help="Stop and fail a child that runs longer than this.")
@click.option("--worker-memory-growth", type=click.IntRange(min=1), default=1024, show_default=True, metavar="MB",
              help="Replace the worker processes once one has grown by this much (TensorFlow keeps every "
                   "child's graphs).")
@click.option("--objective", type=click.Choice(["accuracy", "accuracy-params", "accuracy-latency"]),
              default="accuracy", show_default=True,
              help="The reward: validation accuracy, or accuracy x (cost / target) ^ w as in MnasNet.")
@click.option("--target-params", type=click.IntRange(min=1), metavar="N", help="The parameter count accuracy-params aims at.")
@click.option("--target-latency-ms", type=click.FloatRange(min=0, min_open=True), metavar="MS",
              callback=lambda ctx, param, value: _finite(value, ctx, param),
              help="Milliseconds per image (batch of 1, on a worker) accuracy-latency aims at.")
@click.option("--objective-weight", type=click.FloatRange(max=0), default=-0.07, show_default=True, metavar="W",
              callback=lambda ctx, param, value: _finite(value, ctx, param),
              help="w in accuracy x (cost / target) ^ w.")
@click.option("--resume", is_flag=True,
              help="Continue the run --name where it stopped; its config.json gives every setting not passed.")
@click.pass_context
def search(ctx: click.Context, no_dashboard: bool, resume: bool, **options) -> None:
    """Search a space for the best child model, then retrain and test the winner."""
    from nas.engine import run_search

    given = {name for name in [*options, "no_dashboard"]
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    given = {"dashboard" if name == "no_dashboard" else name for name in given}
    run_search(SearchConfig(dashboard=not no_dashboard, **options), resume=resume, given=given - {"name", "runs_dir"})


@main.command()
@click.argument("spaces", nargs=-1)
def spaces(spaces: tuple[str, ...]) -> None:
    """List the built-in spaces, or show the decisions of the given spaces (names or files)."""
    from rich.table import Table

    from nas.progress import console
    from search_spaces import builtin_names, load_space

    if not spaces:
        table = Table(title="Built-in search spaces", title_justify="left")
        for column in ("space", "family", "decisions", "architectures", "description"):
            table.add_column(column, justify="right" if column in ("decisions", "architectures") else "left")
        for name in builtin_names():
            space = load_space(name)
            table.add_row(name, space.family, str(len(space.decisions)), space.describe_size(), space.description)
        console.print(table)
        return
    for name in spaces:
        space = load_space(name)
        console.print(f"[bold]{space.name}[/bold] ({space.source}), family {space.family}: "
                      f"{len(space.decisions)} decisions, {space.describe_size()} architectures")
        for d in space.decisions:
            console.print(f"  {d.name:<28} {', '.join(map(str, d.choices))}")


def _finite(value: float | None, ctx, param) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"got {value}, expected a number of seconds", ctx, param)
    return value


def run(argv: list[str] | None = None) -> int:
    """The console script: runs a command and turns errors into one line and an exit code."""
    try:
        main.main(args=argv, prog_name="nas", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        return _fail(e.format_message(), e.exit_code)
    except USER_ERRORS as e:
        return _fail(str(e), 2)
    except SearchInterrupted as e:
        return _fail(str(e), e.exit_code)
    except SearchStopped as e:
        return _fail(f"search stopped: {e}", e.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return _fail("interrupted; finished trials are kept in the run directory", 130)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"nas: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def entry_point() -> None:
    sys.exit(run())


if __name__ == "__main__":
    entry_point()
