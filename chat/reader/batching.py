"""Reads from many threads share forwards (micro-batching), forward widths are rounded so
kernels and buffers are reused, and freed activations go back to the kernel."""

from __future__ import annotations

import contextlib
import threading
import time

MAX_BATCH_WINDOWS = 16  # per forward; more only adds latency to the requests already waiting
WIDTH_STEP = 64  # forward widths are multiples of this (rounded_width)
TRIM_EVERY_S = 2.0  # at most this often, after a forward, freed memory goes back to the kernel


class MicroBatcher:
    """Runs `run(batch)` on the windows of every request waiting (leader/follower): on 2 cores
    one forward of 8 windows costs 5.4 windows' time, so concurrent requests share forwards
    instead of queueing for the lock one window at a time. A lone request runs alone.

    `lanes` > 1 (Settings.reader_lanes, an option): up to that many forwards at a time, each on
    one intra-op thread while another runs, a lone one on all of them (bench/reader_lanes.py:
    on 2 cores two 1-thread forwards do 1.35-1.46x the work of one 2-thread forward, while a
    lone forward is 1.45x faster on 2 threads)."""

    def __init__(self, run, lanes: int = 1):
        self._run = run  # run(list[ReadJob]) sets each job's result (or the exception)
        self.lanes = lanes
        self._lock = threading.Semaphore(lanes)  # a lane: at most `lanes` forwards at a time
        self._pending_lock = threading.Lock()
        self._pending: list[ReadJob] = []
        self._running = 0
        self._all_threads = None  # the intra-op threads of a lone forward (lanes > 1)
        self._last_trim = time.monotonic()

    def forward(self, ids: list[list[int]], masks: list[list[int]]):
        job = ReadJob(ids, masks)
        with self._pending_lock:
            self._pending.append(job)
        while not job.taken:  # whoever holds a lane reads what is pending
            with self._lock:
                with self._pending_lock:
                    if job.taken:  # another lane took it meanwhile
                        break
                    batch, count = [], 0
                    while self._pending and (not batch or count + len(self._pending[0].ids) <= MAX_BATCH_WINDOWS):
                        batch.append(self._pending.pop(0))
                        batch[-1].taken = True
                        count += len(batch[-1].ids)
                    self._running += 1
                    alone = self._running == 1 and not self._pending
                try:
                    with self._threads(alone):
                        self._run(batch)
                finally:
                    with self._pending_lock:
                        self._running -= 1
                    for done in batch:
                        done.done.set()
                if time.monotonic() - self._last_trim > TRIM_EVERY_S:
                    return_freed_memory()
                    self._last_trim = time.monotonic()
        job.done.wait()
        if isinstance(job.result, BaseException):
            raise job.result
        return job.result

    @contextlib.contextmanager
    def _threads(self, alone: bool):
        """One lane: the threads torch is set to. Several: all of them for a lone forward, one
        each while others run (torch's intra-op thread count is per calling thread)."""
        if self.lanes == 1:
            yield
            return
        import torch

        before = torch.get_num_threads()
        if self._all_threads is None:
            self._all_threads = before
        torch.set_num_threads(self._all_threads if alone else 1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def rounded_width(longest: int, limit: int) -> int:
    """A forward's width rounded up to a multiple of WIDTH_STEP (at most the windows' padded
    length): oneDNN keeps a compiled kernel and its buffers per input shape, and in bfloat16
    the shapes of a free width never stop coming. 400 forwards of random shapes (1-8 windows,
    24-512 tokens, memory trimmed after each) grew a process 1,277 -> 1,707 MB; rounded to 64
    it stayed at 1,230 MB from the 200th on, in the same time (2026-12-03, chat/README.md)."""
    return min(limit, -(-longest // WIDTH_STEP) * WIDTH_STEP)


def _load_release():
    """The call that hands freed memory back to the kernel for the allocator in use: jemalloc's
    purge of every arena where it is preloaded (training re-executes under it), else glibc's
    malloc_trim; None where neither exists."""
    import ctypes

    process = ctypes.CDLL(None)
    if hasattr(process, "mallctl"):  # jemalloc
        mallctl = process.mallctl
        return lambda: mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))  # 4096: all
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


_release = _load_release()


def return_freed_memory() -> None:
    """glibc keeps the freed activations of every differently shaped forward inside its heaps
    (a batch's shape is its windows x its widest window, so shapes rarely repeat): a server
    grew 3,713 -> 4,302 MB over a 10-minute soak, and 500 forwards of random shapes grew a
    process 1.2 -> 2.4 GB; with `malloc_trim(0)` every 10 forwards it stayed at 1.08 GB
    (chat/README.md, memory). jemalloc and fewer arenas did not help. Training, which keeps
    jemalloc's freed pages for speed, calls this at every checkpoint."""
    if _release is not None:
        _release()


class ReadJob:
    """Windows one request waits to have read; `result` is set by whichever thread ran them."""

    def __init__(self, ids: list[list[int]], masks: list[list[int]]):
        self.ids, self.masks = ids, masks
        self.result = None
        self.taken = False  # a lane is reading it (under the batcher's pending lock)
        self.done = threading.Event()
