"""Two real gloo ranks on this machine (torch.multiprocessing.spawn): the world size, a port reserved for their
rendezvous, and a rank that streams one epoch of a real cache and records what it read (trainer/test_distributed.py
on the demo cache, cli/test_multi_cache.py on three caches). Spawn targets live here, in an importable module, so
that every rank can import them."""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from audioret.trainer import distributed as D

WORLD = 2


@contextmanager
def reserved_port() -> Iterator[int]:
    """A free port that stays bound here (SO_REUSEADDR, not listening) until the ranks are done. A port that is
    picked and closed is free for anyone during the seconds the ranks take to start; bound, no other bind (or
    outgoing connection) gets it, while rank 0's store (SO_REUSEADDR too) can still bind it and listen."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def stream_worker(rank: int, port: int, cache: str, out_dir: str, name: str = "demo", extra: str = "") -> None:
    """One rank of a streamed epoch over a real cache (and the `extra` ones, tests/cli/test_multi_cache.py): record
    every clip it reads from the shards."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from audioret.trainer.config import load_config
    from audioret.trainer.data import TrainData
    from audioret.trainer.sources import open_caches, open_extras

    D.init_distributed()
    cfg = load_config(None, ["resident=stream", "num_workers=0", "batch_size=10", "p_eda=0", "p_bt=0",
                             f"extra={extra}"])
    audio, captions = open_caches(Path(cache), name, None, None)
    data = D.shard_train_data(TrainData(audio, captions, "development", cfg, torch.device("cpu"),
                                        open_extras(Path(cache), name, cfg)))
    read: list[int] = []
    get = data.audio.get
    data.audio.get = lambda clip: read.append(int(clip)) or get(clip)  # the shard reads StreamedBatches makes
    rows = [r for b in data.plan(1).batches for r in b.tolist()]
    n_batches = sum(1 for _ in data.epoch(1))
    global_plan = [b.tolist() for b in TrainData.plan(data, 1).batches]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rows": rows, "read": read, "clip_pos": data.table.clip_pos.tolist(), "global": global_plan,
                   "n_batches": n_batches, "source": data.table.source.tolist()}, f)
    D.cleanup()
