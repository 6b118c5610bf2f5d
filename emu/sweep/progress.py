"""What a sweep shows while it runs: a progress bar on a terminal (runs
done of all, failures, runs from the cache, elapsed time, ETA), otherwise
only the notes that matter (a worker lost) on standard error."""

from __future__ import annotations

import sys
import threading

from .runner import FAILED, Watcher


class NoteWatcher(Watcher):
    """No bar: notes only, one line each."""

    def note(self, text: str) -> None:
        print(f"emu sweep: {text}", file=sys.stderr, flush=True)


class BarWatcher(Watcher):
    """A rich progress bar on standard error."""

    def __init__(self, console=None):
        from rich.console import Console
        self.console = console or Console(stderr=True)
        self.failed = 0
        self.lock = threading.Lock()

    def start(self, total: int, done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        self.progress = Progress(
            TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[cached]} cached"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console)
        self.task = self.progress.add_task("runs", total=total, completed=done,
                                           failed=0, cached=done)
        self.progress.start()

    def advance(self, record: dict) -> None:
        with self.lock:
            self.failed += record.get("outcome") in FAILED
            self.progress.update(self.task, advance=1, failed=self.failed)

    def note(self, text: str) -> None:
        with self.lock:
            self.progress.console.print(f"emu sweep: {text}")

    def stop(self) -> None:
        self.progress.stop()
