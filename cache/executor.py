"""One executor abstraction for every fan-out in the project: `prep audio` shard tasks and search trials.

`make_executor(workers)` gives a local process pool (spawn context; each worker pinned to one BLAS/torch thread,
and to one GPU via CUDA_VISIBLE_DEVICES when `gpus` is given). Cluster back-ends (Dask's `distributed.Client`,
which implements the same concurrent.futures interface) plug in behind the same `submit` / `map_unordered` calls.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def _init_local_worker(slots: "mp.Queue | None") -> None:
    """Runs first in each worker: one compute thread, and a GPU slot of its own if there are slots."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    _exit_with_parent()
    if slots is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slots.get())
    # torch reads OMP_NUM_THREADS when (if ever) a task imports it; importing it here would cost every
    # worker ~1.4 s that `prep audio` never needs.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _exit_with_parent(poll: float = 0.5) -> None:
    """A daemon thread that ends this worker when its parent dies (kill -9 of a driver): an orphan would keep
    writing a trial run dir that the re-run driver resumes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class LocalExecutor:
    """A process pool with bounded in-flight work. One slot per GPU (`gpus`) or per CPU worker."""

    def __init__(self, workers: int, gpus: list[int] | None = None):
        if gpus:
            workers = len(gpus)
        self.workers = max(1, int(workers))
        ctx = mp.get_context("spawn")
        slots = None
        if gpus:
            slots = ctx.Queue()
            for g in gpus:
                slots.put(g)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=_init_local_worker, initargs=(slots,)
        )

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, cancel: bool = True) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def map_unordered(executor: Any, fn: Callable[[Any], Any], items: Iterable[Any],
                  max_in_flight: int | None = None) -> Iterator[tuple[Any, Future]]:
    """Yield (item, finished future) as tasks complete, never holding more than `max_in_flight` in flight.

    Works with any executor that has `submit` returning concurrent.futures-style futures.
    """
    limit = max_in_flight or 2 * getattr(executor, "workers", os.cpu_count() or 1)
    pending: dict[Future, Any] = {}
    it = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(pending) < limit:
            try:
                item = next(it)
            except StopIteration:
                exhausted = True
                break
            pending[executor.submit(fn, item)] = item
        if not pending:
            return
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in done:
            yield pending.pop(fut), fut


class DaskExecutor:
    """A `distributed.Client` behind the same `submit` / `shutdown` / `workers` as LocalExecutor.

    `target` is a scheduler address, a `distributed.Client` (not closed by shutdown) or a cluster object such as
    `LocalCluster` (a client is opened on it and closed by shutdown). Tasks are submitted impure (`pure=False`):
    two trials with the same arguments are two runs, not one cached result.
    """

    def __init__(self, target: Any, workers: int | None = None):
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - optional extra
            raise RuntimeError("--scheduler needs Dask: pip install 'dask[distributed]'") from None
        if isinstance(target, Client):
            self.client, self._own_client = target, False
        else:
            try:
                self.client, self._own_client = Client(target, timeout="30s"), True
            except OSError as exc:
                raise RuntimeError(f"cannot reach Dask scheduler {target}: {exc}") from None
        threads = sum(self.client.nthreads().values()) or 1
        self.workers = max(1, min(int(workers), threads) if workers else threads)
        self._executor = self.client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, cancel: bool = True) -> None:
        self._executor.shutdown(wait=not cancel)
        if self._own_client:
            self.client.close()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class RenewingExecutor:
    """An executor whose `submit` replaces a broken pool it owns: what search and sweep drive their runs through.

    Why: when one local pool worker dies (OOM killer, kill -9), ProcessPoolExecutor fails every future it holds and
    refuses all later submits. The drivers record the lost futures as failed runs (`trainer.search.trials.result_of`)
    and must go on with the remaining ones, so the next submit shuts the broken pool down and starts a fresh one from
    `factory`. A borrowed executor (`executor=` given, e.g. a caller's Dask client) is never replaced and never shut
    down: its BrokenExecutor propagates to the caller who owns it.
    """

    def __init__(self, factory: Callable[[], Any], executor: Any = None) -> None:
        self.own = executor is None
        self._factory = factory
        self.executor = factory() if executor is None else executor
        self.renewals = 0

    def slots(self, default: int) -> int:
        """How many tasks to keep in flight: the executor's worker count, else `default` (at least 1)."""
        return max(1, int(getattr(self.executor, "workers", default) or default or 1))

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        try:
            return self.executor.submit(fn, *args, **kwargs)
        except BrokenExecutor:
            if not self.own:
                raise
            self.executor.shutdown()
            self.executor = self._factory()
            self.renewals += 1
            return self.executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        if self.own:
            self.executor.shutdown()

    def __enter__(self) -> "RenewingExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def make_executor(workers: int | None = None, scheduler: Any = None,
                  gpus: list[int] | None = None) -> "LocalExecutor | DaskExecutor":
    """A local pool of `workers` processes (default: all cores), or Dask when `scheduler` is given (an address
    like tcp://HOST:8786, a Client or a cluster object); with Dask, `workers` caps the tasks in flight."""
    if scheduler is not None and scheduler != "":
        return DaskExecutor(scheduler, workers)
    return LocalExecutor(workers or os.cpu_count() or 1, gpus=gpus)
