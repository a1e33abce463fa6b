"""One executor abstraction for every fan-out in the project: `prep audio` shard tasks and search trials.

`make_executor(workers)` gives a local process pool (spawn context; each worker pinned to one BLAS/torch thread,
and to one GPU via CUDA_VISIBLE_DEVICES when `gpus` is given). Cluster back-ends (Dask's `distributed.Client`,
which implements the same concurrent.futures interface) plug in behind the same `submit` / `map_unordered` calls.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def _init_local_worker(slots: "mp.Queue | None") -> None:
    """Runs first in each worker: one compute thread, and a GPU slot of its own if there are slots."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if slots is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slots.get())
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency, but workers of prep need not import it
        pass


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


def make_executor(workers: int | None = None, scheduler: str | None = None,
                  gpus: list[int] | None = None) -> LocalExecutor:
    """A local pool of `workers` processes (default: all cores). `scheduler` is for cluster back-ends."""
    if scheduler:
        raise NotImplementedError("cluster schedulers are not wired yet")  # replaced by the Dask back-end
    return LocalExecutor(workers or os.cpu_count() or 1, gpus=gpus)
