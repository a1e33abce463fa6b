"""A search's outputs, rebuilt from the journal alone: best.toml, report.md, convergence.png, objective.png.

Why from the journal: the outputs are a pure function of trials.jsonl, so they are rewritten after every
(resumed) search and can be regenerated without the driver's memory. best.toml goes through trainer.config's
load_config/save_config so it is exactly what `audioret train --config` accepts.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Callable, Sequence

from skopt import Optimizer
from skopt.space import Categorical, Dimension

from audioret.cache.publish import publish_file
from audioret.trainer.search.journal import Journal, TrialState
from audioret.trainer.search.space import PAPER_BEST, params_to_point


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def write_best_toml(best: TrialState, out: Path, base_config: str | Path | None,
                    log: Callable[[str], None], overrides: Sequence[str] = ()) -> Path:
    """Base config + fixed overrides + the best trial's params, validated by trainer.config (exactly what the
    trial trained with); a plain TOML merge of base + params for keys that are not training keys (custom
    objectives, which never see the overrides)."""
    path = out / "best.toml"
    try:
        from audioret.trainer.config import ConfigError, load_config, save_config
    except ImportError:  # the trainer is not installed in this checkout: fall back to the merge below
        ConfigError = None  # type: ignore[assignment]
    if ConfigError is not None:
        try:
            cfg = load_config(base_config, [*overrides, *(f"{k}={v}" for k, v in best.params.items())])
            return save_config(cfg, path)
        except ConfigError as exc:
            log(f"search: best.toml is a plain merge, not a validated training config ({exc})")
    import tomli_w

    merged: dict[str, Any] = {}
    if base_config:
        merged.update(tomllib.loads(Path(base_config).read_text(encoding="utf-8")))
    merged.update(best.params)
    text = tomli_w.dumps(merged)
    publish_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def report_markdown(journal: Journal, space: list[Dimension]) -> str:
    """Trials sorted by objective (failed last), and the best params next to the paper's best trial."""
    finished = sorted(journal.by_status("finished"), key=lambda t: t.objective)
    failed = journal.by_status("failed")
    running = journal.by_status("started")
    names = [d.name for d in space]
    head = journal.header or {}
    lines = ["# Hyperparameter search", "",
             f"- trials ended: {len(finished) + len(failed)} ({len(finished)} finished, {len(failed)} failed"
             + (f", {len(running)} still marked running" if running else "") + ")",
             f"- optimiser: scikit-optimize, estimator {head.get('estimator')}, acquisition {head.get('acq')}, "
             f"{head.get('initial')} random starts, seed {head.get('seed')}",
             "- objective: minimise −(best validation mAP@10)", ""]
    if finished:
        best = finished[0]
        lines += [f"## Best: trial {best.number:03d}, mAP@10 {-best.objective:.4f}", "",
                  "| parameter | this search | paper (Table 4 best) |", "|---|---|---|"]
        for n in names:
            lines.append(f"| {n} | {_fmt(best.params.get(n))} | {_fmt(PAPER_BEST.get(n))} |")
        lines.append("")
    lines += ["## Trials", "", "| rank | trial | mAP@10 | wall s | status | " + " | ".join(names) + " |",
              "|" + "---|" * (5 + len(names))]
    for rank, t in enumerate(finished, 1):
        lines.append(f"| {rank} | {t.number:03d} | {-t.objective:.4f} | {_fmt(t.wall_s)} | finished | "
                     + " | ".join(_fmt(t.params.get(n)) for n in names) + " |")
    for t in failed:
        err = t.error.replace("|", "/")[:120]
        lines.append(f"| – | {t.number:03d} | – | {_fmt(t.wall_s)} | failed: {err} | "
                     + " | ".join(_fmt(t.params.get(n)) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _plots(journal: Journal, space: list[Dimension], out: Path, log: Callable[[str], None]) -> None:
    """convergence.png always (≥ 1 finished trial); objective.png only where a surrogate can be drawn."""
    finished = journal.by_status("finished")
    if not finished:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skopt.plots import plot_convergence, plot_objective

    head = journal.header or {}
    xs = [params_to_point(space, t.params) for t in finished]
    ys = [float(t.objective) for t in finished]
    opt = Optimizer(space, base_estimator=head.get("estimator", "GP"), n_initial_points=1,
                    acq_optimizer="sampling", random_state=int(head.get("seed", 0)))
    result = opt.tell(xs, ys)
    ax = plot_convergence(result)
    ax.figure.savefig(out / "convergence.png", dpi=100, bbox_inches="tight")
    plt.close("all")
    varying = [d for d in space if not (isinstance(d, Categorical) and len(d.categories) < 2)]
    if len(varying) < 2 or len(finished) < 3 or not result.models:
        log(f"search: objective.png skipped (needs ≥ 2 dimensions and ≥ 3 finished trials; "
            f"have {len(varying)} and {len(finished)})")
        return
    try:
        axes = plot_objective(result, n_points=20, n_samples=100)
        fig = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        fig.savefig(out / "objective.png", dpi=80, bbox_inches="tight")
    except (ValueError, IndexError) as exc:  # skopt cannot draw some degenerate surrogates
        log(f"search: objective.png skipped ({type(exc).__name__}: {exc})")
    finally:
        plt.close("all")


def write_outputs(journal: Journal, space: list[Dimension], out: Path, base_config: str | Path | None,
                  log: Callable[[str], None], overrides: Sequence[str] = ()) -> None:
    """Write every output the journal supports; the paths are named in one closing log line."""
    text = report_markdown(journal, space)
    publish_file(out / "report.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    written = ["report.md"]
    finished = sorted(journal.by_status("finished"), key=lambda t: t.objective)
    if finished:
        write_best_toml(finished[0], out, base_config, log, overrides)
        written.append("best.toml")
        _plots(journal, space, out, log)
        written += [p for p in ("convergence.png", "objective.png") if (out / p).exists()]
        log(f"search: best trial {finished[0].number:03d} mAP@10 {-finished[0].objective:.4f}; "
            f"wrote {', '.join(str(out / w) for w in written)}")
    else:
        log(f"search: no finished trial; wrote {out / 'report.md'}")
