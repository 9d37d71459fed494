"""Progress bars on long work (ERF runs, large ONNX files): rich on a terminal, else nothing."""

from __future__ import annotations


class ProgressBar:
    """``with ProgressBar(total, "what") as bar: ... bar.advance(n)``.

    A transient rich bar on stderr when ``enabled``, rich is installed and stderr is a
    terminal; otherwise every call does nothing (so output piped to a file stays clean).
    """

    def __init__(self, total: int, description: str, enabled: bool = True):
        self._bar = self._task = None
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:
            return
        console = Console(stderr=True)
        if console.is_terminal:
            self._bar = Progress(console=console, transient=True)
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> "ProgressBar":
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
