"""rfmap.ops._threads.run_tasks: every task once, errors raised in the caller, no wait for a
pool worker that has not started a task, and nothing of a call freed on a worker."""

import contextlib
import functools
import gc
import subprocess
import sys
import threading
import weakref

import pytest
import torch

from rfmap.ops import _threads


@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_task_runs_once(count):
    seen = []
    lock = threading.Lock()

    def fn(task):
        with lock:
            seen.append(task)

    _threads.run_tasks(fn, range(50), count)
    assert sorted(seen) == list(range(50))


def test_the_first_error_is_raised_in_the_caller_and_the_pool_stays_usable():
    def fn(task):
        if task == 3:
            raise ValueError("task 3")

    with pytest.raises(ValueError, match="task 3"):
        _threads.run_tasks(fn, range(8), 2)
    seen = []
    _threads.run_tasks(seen.append, range(4), 2)
    assert sorted(seen) == [0, 1, 2, 3]


@contextlib.contextmanager
def _workers_held():
    """Every pool worker held up (on a job that waits) until the block ends."""
    _threads._ensure_workers(1)
    release, held = threading.Event(), threading.Semaphore(0)

    def hold():
        held.release()
        release.wait(30)

    for _ in _threads._workers:
        _threads._jobs.put(hold)
    try:
        assert all(held.acquire(timeout=10) for _ in _threads._workers)
        yield
    finally:
        release.set()


def test_the_caller_does_not_wait_for_a_worker_that_never_started():
    # every pool worker is held up before it can look at the call: the caller runs every task
    # itself and returns (it used to wait until each worker had come and gone)
    seen, done = [], threading.Event()

    def call():
        _threads.run_tasks(seen.append, range(6), 2)
        done.set()

    caller = threading.Thread(target=call, daemon=True)
    with _workers_held(), torch.no_grad():
        caller.start()
        finished = done.wait(10)
    # released: the worker comes back, finds nothing left, and returns
    caller.join(10)
    assert finished and sorted(seen) == list(range(6))
    more = []
    _threads.run_tasks(more.append, range(3), 2)  # the pool works afterwards
    assert sorted(more) == [0, 1, 2]


def test_a_late_worker_holds_nothing_of_the_call():
    # A worker that comes to a call after the caller has returned must not be the one to free
    # the call's tensors: at interpreter shutdown that aborted the process ("terminate called
    # without an active exception", when torch re-took the GIL in a tensor's destructor).
    class Data:  # what a call's function and tasks hold (tensors, in the ops)
        pass

    with _workers_held():
        held_by_fn, tasks, seen = Data(), [Data(), Data()], []
        alive = [weakref.ref(held_by_fn), *map(weakref.ref, tasks)]
        _threads.run_tasks(functools.partial(lambda data, task: seen.append(id(task)), held_by_fn), tasks, 2)
        assert sorted(seen) == sorted(map(id, tasks))
        del held_by_fn, tasks
        gc.collect()
        # the call's work is still queued for the held worker, and yet
        assert [ref() for ref in alive] == [None, None, None]


EXIT = """
import atexit, threading

def after_rfmap():  # registered first, so it runs after rfmap.ops' own exit handler
    alive = [t.name for t in threading.enumerate() if t.name.startswith("rfmap-ops")]
    seen = []
    _threads.run_tasks(seen.append, range(4), 2)  # still works: on the calling thread
    print("alive", alive, sorted(seen), flush=True)

atexit.register(after_rfmap)
import torch
from rfmap.ops import _threads
torch.set_num_threads(2)
seen = []
_threads.run_tasks(seen.append, range(4), 2)
print("workers", len(_threads._workers), sorted(seen), flush=True)
"""


def test_the_workers_end_before_the_interpreter_exits():
    # a daemon thread that is still running at shutdown is cut off when it next asks for the
    # GIL; in torch's C++ code (a tensor's destructor) that aborted the process
    proc = subprocess.run([sys.executable, "-c", EXIT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout.splitlines() == ["workers 1 [0, 1, 2, 3]", "alive [] [0, 1, 2, 3]"], proc.stdout
