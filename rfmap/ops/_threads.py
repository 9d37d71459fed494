"""How the RoI ops use CPU threads: one thread per operation, tasks shared out dynamically.

torch's intra-op parallelism (OpenMP) splits every operation statically over its threads and
waits for all of them at the end of each one.  When other processes compete for the cores,
a thread that is not scheduled holds up the others for a time slice, at every operation:
an op made of many small torch operations then runs many times slower than on an idle
machine (measured with ``benchmarks/bench_roi_ops.py``).  So the kernels here run on a
single intra-op thread (:func:`single_threaded`), and their few heavy steps -- the sparse
products, the max queries, the gradient scatters -- are split into independent tasks that
the calling thread and a small pool of worker threads (:func:`run_tasks`, each worker on one
intra-op thread too) take one after another until none are left.  A busy core then slows
an op by its share of the machine, not by a time slice per operation.  Each task writes
its own part of the result, so results do not depend on which thread ran what.

SPP's loops, whose calls take well under a millisecond, use native worker threads instead
(``kernels/pool.h``): a Python worker wakes too late for them and needs the GIL.

The number of threads is torch's (``torch.get_num_threads()`` in the calling thread), so
``torch.set_num_threads`` governs the ops as it governs torch.  Tensors not on the CPU run
their tasks in order on the calling thread.  Tasks run without autograd (they are the inside
of the registered ops, whose autograd is registered separately).  The workers end at
interpreter exit; calls made after that run their tasks on the calling thread.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

_lock = threading.Lock()
_jobs: queue.SimpleQueue = queue.SimpleQueue()
_workers: list[threading.Thread] = []
_state = threading.local()
#: set at interpreter exit (:func:`_stop_workers`): calls then run their tasks on the caller
_stopped = False
#: seconds the exit waits for each worker to finish the task it is on
_JOIN = 30.0
#: Elements of the largest buffer :func:`scratch` keeps for reuse.
_KEPT = 1 << 23
#: what :func:`run_tasks` hands its function
_Task = TypeVar("_Task")


def _after_fork_in_child() -> None:
    """A forked child (a DataLoader worker, say) has none of the parent's threads: start afresh."""
    global _lock, _jobs, _workers, _state
    _lock, _jobs, _workers, _state = threading.Lock(), queue.SimpleQueue(), [], threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _worker(ready: threading.Event, jobs: queue.SimpleQueue) -> None:
    torch.set_num_threads(1)  # this thread's OpenMP and MKL setting (they are per thread)
    ready.set()
    while (job := jobs.get()) is not None:  # None: the interpreter exits (_stop_workers)
        job()


@atexit.register
def _stop_workers() -> None:
    """End the workers at interpreter exit, before Python cuts daemon threads off: one cut off
    while it frees a tensor (torch lets go of the GIL there) aborts the process."""
    global _stopped
    with _lock:
        _stopped, workers = True, list(_workers)
        _workers.clear()
        for _ in workers:
            _jobs.put(None)
    for thread in workers:
        thread.join(_JOIN)


def scratch(rows: int, columns: int, dtype: torch.dtype, device: torch.device, name: str = "") -> torch.Tensor:
    """A ``(rows, columns)`` buffer of the calling thread, one per ``name`` and dtype, reused
    across calls on the CPU (fresh memory costs page faults at every use); buffers of more
    than ``_KEPT`` elements are not kept."""
    if torch.device(device).type != "cpu" or rows * columns > _KEPT:
        return torch.empty(rows, columns, dtype=dtype, device=device)
    buffers = _state.__dict__.setdefault("buffers", {})
    buffer = buffers.get((name, dtype))
    if buffer is None or buffer.numel() < rows * columns:
        buffer = buffers[(name, dtype)] = torch.empty(rows * columns, dtype=dtype)
    return buffer[: rows * columns].view(rows, columns)


def _ensure_workers(count: int) -> None:
    """Start pool workers until there are ``count``; the process-wide default thread count
    that ``torch.set_num_threads`` also sets is restored afterwards."""
    if len(_workers) >= count:
        return
    with _lock:
        if _stopped:
            return
        jobs = _jobs
        before = torch.get_num_threads()
        started = []
        while len(_workers) < count:
            ready = threading.Event()
            thread = threading.Thread(target=_worker, args=(ready, jobs), name=f"rfmap-ops-{len(_workers)}", daemon=True)
            thread.start()
            _workers.append(thread)
            started.append(ready)
        for ready in started:
            ready.wait()
        torch.set_num_threads(before)


def threads() -> int:
    """Threads the ops may use in the calling thread: torch's setting (1 inside a task)."""
    return 1 if getattr(_state, "in_op", False) else torch.get_num_threads()


@contextlib.contextmanager
def single_threaded() -> Iterator[int]:
    """Run the body on one intra-op thread; yields the thread count the body may use for
    :func:`run_tasks` (the caller's setting on entry).  Nested uses are free."""
    if getattr(_state, "in_op", False):
        yield 1
        return
    count = torch.get_num_threads()
    _state.in_op = True
    if count > 1:
        torch.set_num_threads(1)
    try:
        yield count
    finally:
        if count > 1:
            torch.set_num_threads(count)
        _state.in_op = False


def run_tasks(fn: Callable[[_Task], None], tasks: Sequence[_Task], count: int, device: torch.device | str = "cpu") -> None:
    """``fn(task)`` for every task, on ``count`` threads (the caller and ``count - 1`` pool
    workers), each thread taking the next task when it is done.  The caller waits only for
    tasks that a worker has started: a worker that wakes up after the caller has taken every
    task (waking a sleeping thread can take longer than a small op) finds none and returns.
    The first exception is raised in the caller once every started task has stopped; no
    task starts after it."""
    tasks = list(tasks)
    count = min(count, len(tasks))
    if count <= 1 or _stopped or torch.device(device).type != "cpu":
        for task in tasks:
            fn(task)
        return
    _ensure_workers(count - 1)
    run = _Run(fn, tasks)
    for _ in range(count - 1):
        _jobs.put(run.work)
    run.work()
    run.finish()


class _Run:
    """The shared state of one :func:`run_tasks` call: the next task, how many are running.

    A worker may come to a call (and drop its reference to it) after the caller has returned,
    possibly while the interpreter shuts down.  Only the caller lets go of the function and
    the tasks, so their tensors are never freed on a worker: freeing a tensor there lets go
    of the GIL, and a daemon thread that asks for the GIL back during shutdown is ended in
    the middle of torch's C++ code, which aborts the process."""

    def __init__(self, fn: Callable[[_Task], None], tasks: list):
        self.fn: Callable[[_Task], None] | None = fn
        self.tasks = tasks
        self.next = self.running = 0
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)

    def work(self) -> None:
        with torch.no_grad():  # grad mode is per thread: a worker's is on
            while True:
                with self.lock:
                    if self.errors or self.next >= len(self.tasks):
                        return
                    fn, task = self.fn, self.tasks[self.next]
                    self.next += 1
                    self.running += 1
                try:
                    fn(task)  # type: ignore[misc]
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller
                    with self.lock:
                        self.errors.append(error)
                finally:
                    fn = task = None  # before the caller may return
                    with self.lock:
                        self.running -= 1
                        if not self.running:
                            self.idle.notify_all()

    def finish(self) -> None:
        """Once the caller's own :meth:`work` has returned (no task is left to start): wait for
        the running ones, let go of the function and the tasks, then raise the first error."""
        with self.lock:
            while self.running:
                self.idle.wait()
            self.fn, self.tasks, errors, self.errors = None, [], self.errors, []
        if errors:
            raise errors[0]
