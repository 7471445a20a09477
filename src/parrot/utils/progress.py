"""Progress display for long work (training, tokenizer training, benchmarks), via rich."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Progress]:
    """A progress bar with count, elapsed time and ETA, drawn on stderr.

    Yields a `rich.progress.Progress`; the task id of the single bar is `0`. Extra fields
    (loss, tokens/s) go into the description via `progress.update(0, description=...)`.
    """
    console = Console(file=sys.stderr)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not enabled, transient=False) as progress:
        progress.add_task(description, total=total)
        yield progress
