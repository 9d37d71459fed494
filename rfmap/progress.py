"""Progress bars on long work (ERF runs, large ONNX files): rich on a terminal, else nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # both imported only where they are used (rich may be absent)
    import threading

    from rich.progress import Progress, TaskID


class ProgressBar:
    """``with ProgressBar(total, "what") as bar: ... bar.advance(n)``.

    A transient rich bar on stderr when ``enabled``, rich is installed and stderr is a
    terminal; otherwise every call does nothing (so output piped to a file stays clean).
    """

    def __init__(self, total: int, description: str, enabled: bool = True):
        self._bar: Progress | None = None
        self._task: TaskID | None = None
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

    def __enter__(self) -> ProgressBar:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


class Status:
    """``with Status("reading mymodels:build"): ...`` -- a one-line status with a spinner on
    stderr for work that may take long (importing torch, tracing a model), shown only when it
    has run for ``delay`` seconds and stderr is a terminal; cleared when the work ends.  Plain
    ``\\r`` writes: it needs neither rich nor anything else that is slow to import."""

    FRAMES = "|/-\\"

    def __init__(self, message: str, delay: float = 1.0, stream: TextIO | None = None):
        import sys

        self.message = message
        self.delay = delay
        self.stream = stream if stream is not None else sys.stderr
        self._thread: threading.Thread | None = None
        self._done: threading.Event | None = None

    def _enabled(self) -> bool:
        import os

        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        except ValueError:
            return False

    def _spin(self, done: threading.Event) -> None:
        if done.wait(self.delay):
            return
        k = 0
        while not done.wait(0.1):
            self.stream.write(f"\r{self.FRAMES[k % 4]} {self.message} ...")
            self.stream.flush()
            k += 1
        self.stream.write("\r" + " " * (len(self.message) + 6) + "\r")
        self.stream.flush()

    def __enter__(self) -> Status:
        if self._enabled():
            import threading

            self._done = threading.Event()
            self._thread = threading.Thread(target=self._spin, args=(self._done,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None and self._done is not None:
            self._done.set()
            self._thread.join()
