"""`train --nproc N`: start N ranks of this same command line through torch's elastic launcher.

Why in the CLI and not in trainer/distributed.py: launching means knowing the command line (which options are the
launcher's own and must not reach the ranks, which module to run); the trainer only does what each rank does once
started (trainer/distributed.py: process group, sharding, the global-batch loss).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

LAUNCHER_OPTIONS = ("--nproc", "--nnodes", "--rdzv-endpoint")


def without_launcher_options(argv: Sequence[str]) -> list[str]:
    """The CLI arguments minus the launcher's own (`--nproc 2`, `--nnodes=1`, ...): the ranks do not need them."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCHER_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(o + "=" for o in LAUNCHER_OPTIONS)):
            out.append(arg)
    return out


def launch_local(nproc: int, argv: Sequence[str], module: str = "audioret", nnodes: str = "1",
                 rdzv_endpoint: str = "", max_restarts: int = 0) -> int:
    """Re-run `python -m MODULE ARGV` as `nproc` ranks through torch's elastic launcher (what `torchrun` does).

    Why in-process instead of exec'ing `torchrun`: the console script may not be on PATH (tests, `python -m`),
    and the same interpreter is guaranteed. Single node uses `--standalone` (rendezvous on a free port, so two
    jobs on one machine never collide); multi-node passes `nnodes` and `rdzv_endpoint` (c10d rendezvous).
    The children find RANK/WORLD_SIZE in their environment, so `launched_distributed()` stops recursion.
    Returns the exit status to use (0 ok, 1 when any rank failed).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    opts = [f"--nproc-per-node={nproc}", f"--nnodes={nnodes}", f"--max-restarts={max_restarts}"]
    if rdzv_endpoint:
        opts += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    else:
        opts += ["--standalone"]
    parser = get_args_parser()
    parser.allow_abbrev = False  # our own options (e.g. --nproc) must never be read as torchrun's abbreviations
    args = parser.parse_args([*opts, "--module", module, *without_launcher_options(argv)])
    try:
        run(args)
    except ChildFailedError as exc:
        first = next(iter(exc.failures.values()), None)
        code = getattr(first, "exitcode", 1) if first is not None else 1
        return code if isinstance(code, int) and code > 0 else 1
    return 0


def run_as_ranks(nproc: int, run_dir: Path, wait_lock: float, nnodes: str = "1", rdzv_endpoint: str = "") -> int:
    """`train --nproc N`: wait until no other train holds RUN_DIR, then run this command line as N ranks; returns
    the exit status. The wait happens before the ranks start (rank 0 takes the run's lock for the run itself)."""
    from audioret.trainer.run_lock import wait_until_free

    if run_dir.exists():  # a directory that does not exist yet has no holder; probing would create it
        wait_until_free(run_dir, wait_lock)
    return launch_local(nproc, sys.argv[1:], nnodes=nnodes, rdzv_endpoint=rdzv_endpoint)
