"""Progress bars for long work (import, feature extraction, training, evaluation), one style everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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

console = Console(stderr=True)


@contextmanager
def progress_task(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Show a bar on stderr; yields `advance(n)`. Total may be set later through `advance.set_total`."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        def set_total(total: int) -> None:
            progress.update(task, total=total)

        advance.set_total = set_total  # type: ignore[attr-defined]
        yield advance
