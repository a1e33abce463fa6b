"""One executor abstraction, two back-ends: a Dask LocalCluster (2 worker processes) runs real `prep audio`
shard tasks and a real 4-trial search, and the results equal the local process pool's."""
from __future__ import annotations

import json
import os

import distributed  # noqa: E402  (a test dependency: a broken install must fail, not skip)
import pytest
from skopt.space import Integer, Real

from audioret.cache.executor import DaskExecutor, RenewingExecutor, make_executor, map_unordered
from audioret.trainer.search.journal import Journal
from audioret.trainer.search.smbo import run_search
from audioret.trainer.search.trials import result_of
from support import real_clips
from support.search_objectives import Quadratic


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c:
        yield c


def _shard_tasks(out_dir, clips):
    from audioret.pipeline.features import DEFAULT_CONFIG

    return [{"path": str(out_dir / f"shard-{i:05d}.h5"), "clip_ids": [p.name for p in part], "key": "k" * 64,
             "config": DEFAULT_CONFIG.to_dict(), "splits": ["development"] * len(part),
             "paths": [str(p) for p in part]} for i, part in enumerate((clips[:2], clips[2:4]))]


def _run_shards(executor, tasks):
    from audioret.pipeline.prep_audio import process_shard

    results = {}
    for task, fut in map_unordered(executor, process_shard, tasks):
        results[task["path"].rsplit("/", 1)[1]] = fut.result()
    return results


def test_prep_audio_shard_tasks_on_dask_equal_local_pool(cluster, tmp_path):
    clips = [p for p in real_clips() if p.suffix in (".wav", ".flac")][:4]
    (tmp_path / "local").mkdir()
    (tmp_path / "dask").mkdir()
    with make_executor(2) as pool:
        local = _run_shards(pool, _shard_tasks(tmp_path / "local", clips))
    ex = make_executor(2, scheduler=cluster)
    assert isinstance(ex, DaskExecutor) and ex.workers == 2
    with ex:
        dask = _run_shards(ex, _shard_tasks(tmp_path / "dask", clips))
    assert set(local) == set(dask) == {"shard-00000.h5", "shard-00001.h5"}
    for name in local:
        assert local[name]["failures"] == [] and local[name]["n_frames"] > 0
        assert dask[name]["sha256"] == local[name]["sha256"]  # identical feature payloads
        assert dask[name]["n_frames"] == local[name]["n_frames"]


def test_four_trial_search_on_dask_equals_local_pool(cluster, tmp_path):
    space = [Real(0.0, 1.0, name="p_ms"), Integer(0, 6, name="g_max")]
    kw = dict(trials=4, space=space, initial=4, seed=5, workers=2, log=lambda _: None)
    local = run_search(Quadratic(seconds=0.2, fail=("001",)), tmp_path / "local", **kw)
    dask = run_search(Quadratic(seconds=0.2, fail=("001",)), tmp_path / "dask", scheduler=cluster.scheduler_address,
                      **kw)

    def summary(j):
        return [(n, json.dumps(t.params, sort_keys=True), t.status, t.objective, t.error)
                for n, t in sorted(j.trials.items())]

    assert summary(dask) == summary(local)
    assert [t.status for t in local.trials.values()].count("finished") == 3
    with distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
    assert {t.metrics["pid"] for t in dask.by_status("finished")} <= worker_pids  # really ran on Dask workers


def test_search_survives_a_pool_worker_that_dies(tmp_path):
    """A trial whose worker process is SIGKILLed (an OOM kill) ends as failed with a clear error; the search
    replaces the broken pool and still ends --trials trials (the same RenewingExecutor serves `sweep`)."""
    space = [Real(0.0, 1.0, name="p_eda")]
    journal = run_search(Quadratic(die=("001",)), tmp_path / "s", trials=3, space=space, initial=3, workers=1,
                         log=lambda line: None)
    by_number = {t.number: t for t in Journal(tmp_path / "s" / "trials.jsonl").trials.values()}
    assert [by_number[n].status for n in range(3)] == ["finished", "failed", "finished"]
    assert by_number[1].error.startswith("worker process died"), by_number[1].error
    assert journal.n_ended == 3 and by_number[0].metrics["pid"] != by_number[2].metrics["pid"]


def test_renewing_executor_replaces_only_a_pool_it_owns():
    """The broken pool is shut down and a fresh one serves the next submit; a borrowed executor is the caller's."""
    pool = RenewingExecutor(lambda: make_executor(1))
    try:
        lost = pool.submit(_die)
        assert result_of(lost)["error"].startswith("worker process died (killed, e.g. out of memory?); run lost: "
                                                   "BrokenProcessPool")
        assert pool.submit(os.getpid).result() > 0 and pool.renewals == 1
    finally:
        pool.shutdown()
    borrowed = make_executor(1)
    try:
        wrapped = RenewingExecutor(lambda: pytest.fail("must not replace a borrowed executor"), borrowed)
        wrapped.submit(_die).exception()
        with pytest.raises(Exception, match="process pool"):
            wrapped.submit(os.getpid)
        wrapped.shutdown()  # not ours: left open
        assert borrowed._pool._broken
    finally:
        borrowed.shutdown()


def _die() -> None:
    os.kill(os.getpid(), 9)
