"""The search driver for real: a CLI driver killed with SIGKILL mid-trial and re-run, failures recorded, the
journal's guarantees (exactly --trials ended, none repeated), outputs, and best.toml into the trainer's config."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from skopt.space import Integer, Real

from audioret.cache.publish import pid_alive
from audioret.trainer import config
from audioret.trainer.search.journal import Journal
from audioret.trainer.search.smbo import SearchError, propose, run_search
from audioret.trainer.search.space import PAPER_BEST, SpaceError, default_space, load_space
from support import cli_cmd, cli_env, run_cli
from support.search_objectives import Quadratic

SPACE_TOML = "p_eda = [0.0, 1.0]\nw_t = [1, 64]\n"


def _events(path: Path, polling: bool = False) -> list[dict]:
    """The journal's events. `polling`: read while the driver appends, so skip a last line still arriving."""
    text = path.read_text()
    if polling:
        text = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in text.splitlines()]


def test_kill9_mid_trial_then_resume_ends_with_exactly_trials(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE_TOML)
    out = tmp_path / "s"
    args = ["search", "--out", out, "--objective", "tests.support.search_objectives:SlowFailing", "--space", space,
            "--trials", "5", "--initial", "5", "--workers", "2", "--seed", "3"]
    proc = subprocess.Popen(cli_cmd(*args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path)
    journal = out / "trials.jsonl"
    deadline = time.monotonic() + 60
    victim = None
    while time.monotonic() < deadline and victim is None:  # wait until a trial is half-way, then SIGKILL
        time.sleep(0.1)
        if journal.exists():
            ev = _events(journal, polling=True)
            ended = {e["trial"] for e in ev if e["event"] in ("finished", "failed")}
            for e in ev:
                prog = out / e.get("run_dir", "-") / "progress.json"
                if e["event"] == "started" and e["trial"] not in ended and prog.exists():
                    if 1 <= json.loads(prog.read_text())["step"] < 6 and ended:
                        victim = e["trial"]
    assert victim is not None, proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    before = _events(journal)
    first_pid = json.loads((out / f"trials/{victim:03d}/progress.json").read_text())["pid"][0]

    rerun = run_cli(*args, cwd=tmp_path, timeout=120)
    assert rerun.returncode == 3, rerun.stderr  # trial 002 raises: partial
    assert "1 failed; see" in rerun.stderr and "report.md" in rerun.stderr
    # pid_alive counts a zombie as dead: an exited orphan waits for init to reap it, which may take a while.
    assert not pid_alive(first_pid), "the killed driver's worker kept running the trial"

    ev = _events(journal)
    assert ev[: len(before)] == before  # append-only
    ended = [e for e in ev if e["event"] in ("finished", "failed")]
    assert sorted(e["trial"] for e in ended) == [0, 1, 2, 3, 4]  # exactly --trials, none twice
    params = {}
    for e in ev[1:]:
        params.setdefault(e["trial"], e["params"])
        assert e["params"] == params[e["trial"]], "a trial changed its params"
    assert len({json.dumps(p, sort_keys=True) for p in params.values()}) == 5  # no params repeated
    assert all(isinstance(p["w_t"], int) and isinstance(p["p_eda"], float) for p in params.values())
    status = {e["trial"]: e["event"] for e in ended}
    assert status[2] == "failed" and list(status.values()).count("finished") == 4
    assert [e["error"] for e in ended if e["trial"] == 2] == ["RuntimeError: injected failure in trial 002"]
    resumed = [e for e in ev if e["event"] == "started" and e.get("resumed")]
    assert victim in {e["trial"] for e in resumed}
    state = json.loads((out / f"trials/{victim:03d}/progress.json").read_text())
    assert state["starts"] == 2 and state["step"] == 6  # continued in the same run dir, not restarted
    assert (out / "report.md").exists() and (out / "best.toml").exists() and (out / "convergence.png").exists()
    again = run_cli(*args, cwd=tmp_path, timeout=60)  # nothing left: outputs only, same journal
    assert again.returncode == 3 and _events(journal) == ev


def test_failed_trial_recorded_search_continues_and_outputs(tmp_path):
    lines: list[str] = []
    space = [Real(0.0, 1.0, name="x"), Integer(0, 3, name="k")]
    j = run_search(Quadratic(fail=("001",)), tmp_path, trials=4, space=space, initial=2, estimator="ET",
                   workers=1, seed=0, log=lines.append)
    assert [t.status for _, t in sorted(j.trials.items())] == ["finished", "failed", "finished", "finished"]
    assert "injected failure in trial 001" in j.trials[1].error
    assert sum(line.startswith("[") for line in lines) == 4 and "[4/4]" in lines[3]
    report = (tmp_path / "report.md").read_text()
    best = min(j.by_status("finished"), key=lambda t: t.objective)
    assert f"## Best: trial {best.number:03d}" in report and "failed: RuntimeError" in report
    rows = [r for r in report.splitlines() if r.startswith("| 1 |")]
    assert rows and f"{-best.objective:.4f}" in rows[0]
    assert (tmp_path / "convergence.png").stat().st_size > 1000 and (tmp_path / "objective.png").exists()
    with pytest.raises(SearchError, match="different run"):
        run_search(Quadratic(), tmp_path, trials=5, space=space[:1], initial=2, log=lines.append)


def test_best_toml_round_trips_into_train_config(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text("epochs = 3\nbatch_size = 4\n")
    j = run_search(Quadratic(), tmp_path / "s", trials=2, space=default_space(), initial=2, workers=1,
                   base_config=base, log=lambda _: None)
    best = min(j.by_status("finished"), key=lambda t: t.objective)
    cfg = config.load_config(tmp_path / "s" / "best.toml")
    assert cfg.epochs == 3 and cfg.batch_size == 4
    for k, v in best.params.items():
        assert getattr(cfg, k) == pytest.approx(v), k


def test_random_starts_do_not_depend_on_timing_and_never_repeat():
    space = [Integer(0, 1, name="a"), Integer(0, 1, name="b")]  # 4 points only
    settings = {"estimator": "GP", "initial": 10, "acq": "gp_hedge", "seed": 7}
    alone = propose(space, settings, [], [], 3, [])
    with_pending = propose(space, settings, [], [{"a": 0, "b": 0}], 3, [])
    assert alone == with_pending  # random-start phase: a function of (seed, trial number) only
    taken = [{"a": 0, "b": 0}, {"a": 0, "b": 1}, {"a": 1, "b": 0}]
    assert propose(space, settings, [], [], 3, taken) == {"a": 1, "b": 1}


def test_journal_drops_torn_last_line(tmp_path):
    j = Journal(tmp_path / "t.jsonl")
    j.append("header", space=[])
    j.append("started", trial=0, params={"x": 1.0}, run_dir="trials/000")
    with open(tmp_path / "t.jsonl", "a") as f:
        f.write('{"event": "finished", "trial": 0, "obj')  # a kill during write
    j2 = Journal(tmp_path / "t.jsonl")
    assert j2.trials[0].status == "started"
    j2.append("finished", trial=0, params={"x": 1.0}, objective=-0.5, metrics={}, wall_s=1.0)
    assert Journal(tmp_path / "t.jsonl").trials[0].status == "finished"


def test_space_file_forms_and_errors(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('p_eda = [0.0, 1.0]\nw_t = [1, 64]\n[lr]\ntype = "real"\nlow = 1e-5\nhigh = 1e-3\n'
                 'prior = "log-uniform"\n[resident]\nvalues = ["ram", "gpu"]\n')
    dims = {d.name: d for d in load_space(f)}
    assert type(dims["w_t"]).__name__ == "Integer" and dims["lr"].prior == "log-uniform"
    assert list(dims["resident"].categories) == ["ram", "gpu"]
    assert [d.name for d in default_space()] == list(PAPER_BEST)
    f.write_text("p_eda = [0.0]\n")
    with pytest.raises(SpaceError, match=r"s\.toml: p_eda"):
        load_space(f)


def test_cli_usage_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [1\n")
    r = run_cli("search", "--out", tmp_path / "o", "--objective", "tests.support.search_objectives:Quadratic",
                "--space", bad)
    assert r.returncode == 2 and "bad.toml: not valid TOML" in r.stderr
    r = run_cli("search", "--out", tmp_path / "o", "--estimator", "GBRT")
    assert r.returncode == 2
    r = run_cli("search", "--help")
    assert r.returncode == 0 and "audioret search --cache" in r.stdout
