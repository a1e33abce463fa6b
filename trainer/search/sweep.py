"""`audioret sweep`: the paper's ablation tables in one command: every variant × seed trained, evaluated and
summarised as mean ± std over seeds in SWEEP_DIR/table.md and table.csv.

Resumable through the same journal as the search: finished runs are kept, runs in flight are resumed, failed runs
are retried (the table needs all of them). A job is (variant, seed); reusing a variant name with other settings in
the same SWEEP_DIR is refused rather than mixing two definitions into one row.
"""
from __future__ import annotations

import csv
import io
import re
import statistics
import sys
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Callable

from audioret.cache.executor import RenewingExecutor, make_executor
from audioret.cache.publish import publish_file
from audioret.trainer.search.journal import Journal, JournalError, TrialState, driver_lock
from audioret.trainer.search.trials import Objective, result_of, run_trial

METRICS = (("r1", "R@1"), ("r5", "R@5"), ("r10", "R@10"), ("map10", "mAP@10"))
PREFIX = "eval_"  # TrainObjective(evaluate_split=...) reports evaluation metrics as eval_<name>
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SweepError(ValueError):
    """A bad --variant, a busy SWEEP_DIR, or a journal from a different sweep (usage errors)."""


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """'no_gain:g_max=0,p_ms=0' → ("no_gain", {"g_max": 0, "p_ms": 0}); 'baseline' or 'baseline:' → no overrides."""
    name, _, body = spec.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise SweepError(f"--variant {spec!r}: name must be letters, digits, _ . - (then ':key=v,key=v')")
    overrides: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise SweepError(f"--variant {spec!r}: {item!r} is not key=value")
        if key.strip() == "seed":
            raise SweepError(f"--variant {spec!r}: seeds come from --seeds, not from a variant")
        overrides[key.strip()] = _value(val.strip())
    return name, overrides


def jobs_for(variants: list[tuple[str, dict[str, Any]]], seeds: int) -> list[tuple[str, int, dict[str, Any]]]:
    names = [n for n, _ in variants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SweepError(f"--variant name(s) given twice: {', '.join(dup)}")
    return [(name, s, {**over, "seed": s}) for name, over in variants for s in range(seeds)]


def summarise(journal: Journal, names: list[str]) -> list[dict[str, Any]]:
    """One row per requested variant: n finished seeds, failed runs, mean/std of each evaluation metric."""
    rows: dict[str, dict[str, Any]] = {n: {"variant": n, "n": 0, "failed": 0, "values": {}} for n in names}
    for t in sorted(journal.trials.values(), key=lambda t: t.number):
        if t.extra["variant"] not in rows:
            continue
        row = rows[t.extra["variant"]]
        if t.status == "finished":
            row["n"] += 1
            for key, _ in METRICS:
                v = t.metrics.get(PREFIX + key, t.metrics.get(key))
                if v is not None:
                    row["values"].setdefault(key, []).append(float(v))
        elif t.status == "failed":
            row["failed"] += 1
    for row in rows.values():
        for key, _ in METRICS:
            vals = row["values"].get(key, [])
            row[key] = (statistics.fmean(vals) if vals else None, statistics.stdev(vals) if len(vals) > 1 else 0.0)
    return list(rows.values())


def write_tables(journal: Journal, out: Path, names: list[str]) -> list[dict[str, Any]]:
    """table.md (the paper's format, mean ± std) and table.csv (plain numbers), published atomically."""
    rows = summarise(journal, names)
    md = ["| variant | seeds | " + " | ".join(label for _, label in METRICS) + " |",
          "|---|---|" + "---|" * len(METRICS)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["variant", "seeds", "failed"] + [f"{k}_{s}" for k, _ in METRICS for s in ("mean", "std")])
    for r in rows:
        cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" if r[k][0] is not None else "–" for k, _ in METRICS]
        failed = f" ({r['failed']} failed)" if r["failed"] else ""
        md.append(f"| {r['variant']} | {r['n']}{failed} | " + " | ".join(cells) + " |")
        w.writerow([r["variant"], r["n"], r["failed"]]
                   + [("" if r[k][0] is None else f"{x:.6f}") for k, _ in METRICS for x in r[k]])
    md_text, csv_text = "\n".join(md) + "\n", buf.getvalue()
    publish_file(out / "table.md", lambda tmp: tmp.write_text(md_text, encoding="utf-8"))
    publish_file(out / "table.csv", lambda tmp: tmp.write_text(csv_text, encoding="utf-8"))
    return rows


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_sweep(objective: Objective, out_dir: str | Path, variants: list[tuple[str, dict[str, Any]]],
              seeds: int = 3, workers: int = 1, scheduler: Any = None, gpus: list[int] | None = None,
              executor: Any = None, objective_id: str = "", log: Callable[[str], None] = _log) -> list[dict[str, Any]]:
    """Run every variant × seed not yet finished (resuming in-flight runs, retrying failed ones); write the
    tables; return their rows (variant, n finished seeds, failed runs, (mean, std) per metric)."""
    out = Path(out_dir)
    jobs = jobs_for(variants, seeds)
    try:
        with driver_lock(out, "sweep", SweepError):
            journal = Journal(out / "trials.jsonl")
            journal.ensure_header({"objective": objective_id}, ("objective",))
            known = {(t.extra["variant"], t.extra["seed"]): t for t in journal.trials.values()}
            todo: list[TrialState] = []
            number = journal.next_number()
            for name, seed, params in jobs:
                old = known.get((name, seed))
                if old is not None and old.params != params:
                    raise SweepError(f"{out}: variant {name!r} was run with {old.params}, now {params}; "
                                     f"use another --out or another variant name")
                if old is None:
                    old = TrialState(number, params, "new", f"runs/{name}/seed{seed}",
                                     extra={"variant": name, "seed": seed})
                    number += 1
                if old.status != "finished":
                    todo.append(old)
            log(f"sweep: {len(jobs)} runs ({len(variants)} variants × {seeds} seeds), {len(todo)} to do")
            _pump(journal, objective, out, todo, workers, scheduler, gpus, executor, log)
            rows = write_tables(journal, out, [n for n, _ in variants])
            log(f"sweep: wrote {out / 'table.md'} and {out / 'table.csv'}")
            return rows
    except JournalError as exc:
        raise SweepError(str(exc)) from None


def _pump(journal: Journal, objective: Objective, out: Path, todo: list[TrialState], workers: int,
          scheduler: Any, gpus: list[int] | None, executor: Any, log: Callable[[str], None]) -> None:
    """Keep the pool full until every run in `todo` has ended, journalling each as finished or failed.

    A pool worker that dies (OOM kill) fails the runs that pool held — journalled with the error, retried by the
    next `audioret sweep` — and the next submit starts a fresh pool, so the other runs and the table still come.
    """
    if not todo:
        return
    executor = RenewingExecutor(lambda: make_executor(workers, scheduler=scheduler, gpus=gpus), executor)
    slots = executor.slots(workers)
    in_flight: dict[Future, TrialState] = {}
    done_count, total = 0, len(todo)
    try:
        while todo or in_flight:
            while todo and len(in_flight) < slots:
                t = todo.pop(0)
                journal.append("started", trial=t.number, params=t.params, run_dir=t.run_dir, extra=t.extra,
                               resumed=t.status == "started")
                fut = executor.submit(run_trial, objective, t.params, str(out / t.run_dir),
                                      str(out / ".locks" / f"{t.number:03d}"))
                in_flight[fut] = t
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in done:
                t = in_flight.pop(fut)
                res = result_of(fut)
                done_count += 1
                label = f"[{done_count}/{total}] {t.extra['variant']} seed {t.extra['seed']}"
                if "error" in res:
                    journal.append("failed", trial=t.number, params=t.params, run_dir=t.run_dir, extra=t.extra,
                                   error=res["error"], traceback=res.get("traceback", ""), wall_s=res.get("wall_s"))
                    log(f"{label} FAILED: {res['error']}")
                else:
                    journal.append("finished", trial=t.number, params=t.params, run_dir=t.run_dir, extra=t.extra,
                                   objective=None, metrics=res["metrics"], wall_s=res["wall_s"])
                    shown = {k: res["metrics"].get(PREFIX + k, res["metrics"].get(k)) for k, _ in METRICS}
                    log(f"{label} " + " ".join(f"{lab} {shown[k]:.4f}" for k, lab in METRICS
                                               if isinstance(shown[k], (int, float))) + f" {res['wall_s']:.1f} s")
    finally:
        executor.shutdown()


def check_variants(variants: list[tuple[str, dict[str, Any]]], config: str | Path | None,
                   overrides: tuple[str, ...] = ()) -> None:
    """Every variant's changes must give a valid training config (ConfigError) before any run starts."""
    from audioret.trainer.config import load_config

    for _, changes in variants:
        load_config(config, [*overrides, *(f"{k}={v}" for k, v in changes.items())])
