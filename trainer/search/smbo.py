"""`audioret search`: Bayesian optimisation (scikit-optimize) of training hyperparameters, resumable after kill -9.

Every trial is an ordinary run dir and the journal (trainer/search/journal.py) is the only state, so re-running
the same command replays finished trials and resumes running ones. Failed trials are recorded, not told to the
optimiser and not retried; parallel trials use an asynchronous constant liar, with the optimiser for trial k seeded
from (seed, k). The objective is any picklable `objective(params, trial_dir) -> dict` with "best_map10". Why each
choice: docs/training.md.
"""
from __future__ import annotations

import sys
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from skopt import Optimizer
from skopt.space import Dimension

from audioret.cache.executor import RenewingExecutor, make_executor
from audioret.trainer.search.journal import Journal, JournalError, TrialState, driver_lock
from audioret.trainer.search.space import default_space, describe, params_to_point, point_to_params
from audioret.trainer.search.trials import Objective, result_of, run_trial

METRIC = "best_map10"
# GBRT is broken in skopt 0.10 on scikit-learn >= 1.6 (checked on this project's machines)
ESTIMATORS = ("GP", "RF", "ET")
ACQ_FUNCS = ("gp_hedge", "EI", "PI", "LCB")
MUST_MATCH = ("space", "estimator", "initial", "acq", "seed", "objective")


class SearchError(Exception):
    """A search that cannot start: busy directory, journal of a different search, bad settings."""


def trial_dir_name(number: int) -> str:
    return f"{number:03d}"


def make_skopt_optimizer(space: list[Dimension], estimator: str, n_initial: int, acq: str, seed: int,
                         number: int) -> Optimizer:
    """A fresh scikit-optimize optimiser (the search's, not the model's: trainer/schedule.py
    `make_torch_optimizer`) whose randomness depends only on (seed, trial number)."""
    rng = np.random.RandomState([int(seed) & 0xFFFFFFFF, int(number)])
    return Optimizer(space, base_estimator=estimator, n_initial_points=n_initial, acq_func=acq,
                     initial_point_generator="random", random_state=rng)


def propose(space: list[Dimension], settings: dict[str, Any], finished: list[TrialState],
            running: list[dict[str, Any]], number: int, taken: list[dict[str, Any]]) -> dict[str, Any]:
    """The params of trial `number`: tell the finished results and lie about running trials, then ask.

    `taken` holds every params dict already tried or running; a proposal equal to one of them (small discrete
    spaces) is replaced by a random draw, up to 20 times, so no trial repeats another's parameters.
    """
    opt = make_skopt_optimizer(space, settings["estimator"], settings["initial"], settings["acq"], settings["seed"],
                               number)
    xs = [params_to_point(space, t.params) for t in finished]
    ys = [float(t.objective) for t in finished]
    lie = min(ys) if ys else 0.0
    xs += [params_to_point(space, p) for p in running]
    ys += [lie] * len(running)
    if xs:
        opt.tell(xs, ys)
    params = point_to_params(space, opt.ask())
    for _ in range(20):
        if params not in taken:
            break
        params = point_to_params(space, opt.space.rvs(n_samples=1, random_state=opt.rng)[0])
    return params


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def run_search(objective: Objective, out_dir: str | Path, trials: int, space: list[Dimension] | None = None,
               initial: int = 10, estimator: str = "GP", acq: str = "gp_hedge", seed: int = 0, workers: int = 1,
               scheduler: Any = None, gpus: list[int] | None = None, executor: Any = None,
               objective_id: str = "", base_config: str | Path | None = None, overrides: Sequence[str] = (),
               log: Callable[[str], None] = _log, keep_best: int | None = 3) -> Journal:
    """Run (or resume) a search until `trials` trials have ended; write the outputs; return the journal.

    `executor` (anything with `submit` returning concurrent futures) overrides `workers/scheduler/gpus`.
    `overrides` are the fixed `KEY=VALUE` settings every trial ran with; best.toml carries them.
    `keep_best`: only the best K finished trials keep their weights (None: all; see `keep_best_weights`).
    Raises SearchError for a busy or foreign SEARCH_DIR.
    """
    if estimator not in ESTIMATORS:
        raise SearchError(f"estimator {estimator!r} not offered; choose one of {', '.join(ESTIMATORS)}")
    if acq not in ACQ_FUNCS:
        raise SearchError(f"acquisition {acq!r} not offered; choose one of {', '.join(ACQ_FUNCS)}")
    space = space or default_space()
    out = Path(out_dir)
    try:
        with driver_lock(out, "search", SearchError):
            journal = Journal(out / "trials.jsonl")
            settings = {"space": describe(space), "estimator": estimator, "initial": int(initial), "acq": acq,
                        "seed": int(seed), "objective": objective_id,
                        "base_config": str(base_config) if base_config else None}
            journal.ensure_header(settings, MUST_MATCH)
            _drive(journal, objective, out, space, settings, trials, workers, scheduler, gpus, executor, log,
                   keep_best)
            keep_best_weights(journal, out, keep_best, log)  # also after a resume with a smaller --keep-best
            from audioret.trainer.search.report import write_outputs

            write_outputs(journal, space, out, base_config, log=log, overrides=overrides)
            return journal
    except JournalError as exc:
        raise SearchError(str(exc)) from None


def _drive(journal: Journal, objective: Objective, out: Path, space: list[Dimension], settings: dict[str, Any],
           trials: int, workers: int, scheduler: Any, gpus: list[int] | None, executor: Any,
           log: Callable[[str], None], keep_best: int | None) -> None:
    """The ask → submit → wait → journal → tell loop, bounded by free slots and the trials still to end."""
    requeue = [t for t in journal.by_status("started")]
    if journal.n_ended >= trials and not requeue:
        log(f"search: {journal.n_ended} trials already ended (--trials {trials}); writing outputs only")
        return
    if requeue:
        log(f"search: resuming; {journal.n_ended} ended, re-queuing running trial(s) "
            f"{', '.join(trial_dir_name(t.number) for t in requeue)}")
    # A pool worker killed mid-trial fails the trials that pool held; the next submit starts a fresh pool.
    executor = RenewingExecutor(lambda: make_executor(workers, scheduler=scheduler, gpus=gpus), executor)
    slots = executor.slots(workers)
    in_flight: dict[Future, TrialState] = {}
    best = min((t for t in journal.by_status("finished")), key=lambda t: t.objective, default=None)
    try:
        while True:
            room = min(slots - len(in_flight), trials - journal.n_ended - len(in_flight))
            while room > 0 and (requeue or len(in_flight) + journal.n_ended < trials):
                if requeue:
                    t = requeue.pop(0)
                    resumed = True
                else:
                    number = journal.next_number()
                    running = [s.params for s in in_flight.values()]
                    taken = [s.params for s in journal.trials.values()]
                    params = propose(space, settings, journal.by_status("finished"), running, number, taken)
                    t = TrialState(number, params, "started", f"trials/{trial_dir_name(number)}")
                    resumed = False
                journal.append("started", trial=t.number, params=t.params, run_dir=t.run_dir, resumed=resumed)
                fut = executor.submit(run_trial, objective, t.params, str(out / t.run_dir),
                                      str(out / ".locks" / trial_dir_name(t.number)))
                in_flight[fut] = journal.trials[t.number]
                room -= 1
            if not in_flight:
                return
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: in_flight[f].number):
                t = in_flight.pop(fut)
                res = result_of(fut)
                best = _record(journal, t, res, best, trials, log)
                keep_best_weights(journal, out, keep_best, log)
    finally:
        executor.shutdown()


def _record(journal: Journal, t: TrialState, res: dict[str, Any], best: TrialState | None, trials: int,
            log: Callable[[str], None]) -> TrialState | None:
    """Journal a finished or failed trial and print its progress line; returns the best finished trial."""
    n = journal.n_ended + 1
    name = trial_dir_name(t.number)
    metrics = res.get("metrics")
    if "error" not in res and (metrics is None or METRIC not in metrics):
        res = {"error": f"objective returned no {METRIC!r} (got {sorted(metrics or {})})", "wall_s": res.get("wall_s")}
    if "error" in res:
        journal.append("failed", trial=t.number, params=t.params, run_dir=t.run_dir, error=res["error"],
                       traceback=res.get("traceback", ""), wall_s=res.get("wall_s"))
        log(f"[{n}/{trials}] trial {name} FAILED after {res.get('wall_s') or 0:.1f} s: {res['error']}")
        return best
    objective = -float(metrics[METRIC])
    journal.append("finished", trial=t.number, params=t.params, run_dir=t.run_dir, objective=objective,
                   metrics=metrics, wall_s=res["wall_s"])
    state = journal.trials[t.number]
    if best is None or objective < best.objective:
        best = state
    log(f"[{n}/{trials}] trial {name} mAP@10 {-objective:.4f} (best {-best.objective:.4f} @ "
        f"{trial_dir_name(best.number)}) {res['wall_s']:.1f} s  {_fmt_params(t.params)}")
    return best



def keep_best_weights(journal: Journal, out: Path, keep: int | None, log: Callable[[str], None] = _log) -> None:
    """Delete the weights of finished trials outside the best `keep` (by objective, ties by trial number).

    Why: every trial is a full run, and 110 runs of BERT-base weights are hundreds of GB; only the best few are
    ever evaluated. A trial's config.toml, metrics.csv and summary stay (it can be retrained), and a note in its
    checkpoints/ says why the weights are gone. Running and failed trials are never touched (failed ones are
    kept for a resume by hand).
    """
    if keep is None:
        return
    from audioret.trainer.checkpoint import drop_weights

    ranked = sorted(journal.by_status("finished"), key=lambda t: (t.objective, t.number))
    for t in ranked[keep:]:
        reason = (f"weights removed by `audioret search --keep-best {keep}`: trial {trial_dir_name(t.number)} "
                  f"is not among the {keep} best; retrain it from its config.toml")
        if drop_weights(out / t.run_dir, reason):
            log(f"search: trial {trial_dir_name(t.number)} left the best {keep}: its weights were removed")
