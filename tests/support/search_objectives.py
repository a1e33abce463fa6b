"""Cheap but real objectives for the search/sweep tests: they write into the trial dir, can be resumed, and
fail on request — the driver code paths are the real ones, only training is replaced by arithmetic."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any


class Quadratic:
    """mAP-like score in (0, 1]: best near the paper's values; sleeps `seconds` in `steps` resumable steps.

    Progress is checkpointed in trial_dir/progress.json, so a re-queued trial continues (records "resumed").
    Trials whose dir name is in `fail` raise; those in `die` SIGKILL their own worker process (an OOM kill).
    """

    def __init__(self, seconds: float = 0.0, steps: int = 1, fail: tuple[str, ...] = (), die: tuple[str, ...] = ()):
        self.seconds, self.steps, self.fail, self.die = seconds, steps, tuple(fail), tuple(die)

    def __call__(self, params: dict[str, Any], trial_dir: Path) -> dict[str, Any]:
        trial_dir = Path(trial_dir)
        if trial_dir.name in self.fail:
            raise RuntimeError(f"injected failure in trial {trial_dir.name}")
        if trial_dir.name in self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        prog = trial_dir / "progress.json"
        state = json.loads(prog.read_text()) if prog.exists() else {"step": 0, "starts": 0, "pid": []}
        state["starts"] += 1
        state["pid"].append(os.getpid())
        while state["step"] < self.steps:
            time.sleep(self.seconds / self.steps)
            state["step"] += 1
            _write_atomic(prog, json.dumps(state))
        _write_atomic(prog, json.dumps(state))
        score = sum((float(v) - 0.5) ** 2 for v in params.values() if isinstance(v, (int, float)))
        return {"best_map10": math.exp(-score), "starts": state["starts"], "pid": os.getpid()}


def _write_atomic(path: Path, text: str) -> None:
    """Tests poll these files while trials run: a reader must never see a truncated, half-written file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class SlowFailing(Quadratic):
    """For the kill -9 test through the CLI (`--objective tests.support.search_objectives:SlowFailing`): 1.2 s per
    trial in 6 resumable steps, and trial 002 raises."""

    def __init__(self) -> None:
        super().__init__(seconds=1.2, steps=6, fail=("002",))


class EvalScores:
    """A sweep objective: evaluation-style metrics that depend on the params and the seed.

    `boom=1` raises; `hang=S` writes the worker's PID to trial_dir/pid and sleeps S seconds (a run to kill -9).
    """

    def __call__(self, params: dict[str, Any], trial_dir: Path) -> dict[str, Any]:
        if params.get("boom"):
            raise RuntimeError("variant asked to fail")
        if params.get("hang"):
            _write_atomic(Path(trial_dir) / "pid", str(os.getpid()))
            time.sleep(float(params["hang"]))
        base = 0.2 + 0.01 * float(params.get("g_max", 3)) + 0.001 * int(params["seed"])
        return {"best_map10": base, "eval_map10": base, "eval_r1": base / 2, "eval_r5": base * 2,
                "eval_r10": min(1.0, base * 3), "pid": os.getpid()}
