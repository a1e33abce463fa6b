"""`audioret search` with the real objective (trainer.loop.train) on a real demo cache, and its best.toml
round-tripping into `audioret train` — the path users run, end to end, in real subprocesses."""
from __future__ import annotations

import json

from support import run_cli
from support.demo import fast_overrides, write_base_toml


def test_search_with_real_training_then_train_from_best_toml(demo_cache, tmp_path):
    cache = demo_cache
    base = write_base_toml(tmp_path / "base.toml", fast_overrides(1))
    space = tmp_path / "space.toml"
    space.write_text("p_eda = [0.0, 0.5]\nw_t = [2, 20]\n")
    out = tmp_path / "s"
    r = run_cli("search", "--cache", cache, "--name", "demo", "--out", out, "--config", base, "--space", space,
                "--trials", "2", "--initial", "2", "--workers", "1", "--seed", "1", "--set", "lr=0.002",
                "--keep-best", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    finished = [e for e in events if e["event"] == "finished"]
    assert sorted(e["trial"] for e in finished) == [0, 1]
    for e in finished:
        assert 0.0 <= e["metrics"]["best_map10"] <= 1.0 and e["objective"] == -e["metrics"]["best_map10"]
    best = min(finished, key=lambda e: (e["objective"], e["trial"]))
    other = next(e for e in finished if e is not best)
    # --keep-best 1: the best trial keeps its weights; the other keeps config and metrics, and says why
    assert (out / best["run_dir"] / "checkpoints" / "best.pt").stat().st_size > 0
    assert not (out / other["run_dir"] / "checkpoints" / "best.pt").exists()
    assert (out / other["run_dir"] / "metrics.csv").exists() and (out / other["run_dir"] / "config.toml").exists()
    gone = run_cli("eval", out / other["run_dir"])
    assert gone.returncode == 1 and "--keep-best 1" in gone.stderr and "Traceback" not in gone.stderr
    text = (out / "best.toml").read_text()
    # base TOML + the fixed --set + the best params: exactly the config the best trial trained with
    assert "epochs = 1" in text and "lr = 0.002" in text and f"w_t = {best['params']['w_t']}" in text
    assert text == (out / best["run_dir"] / "config.toml").read_text()
    run = tmp_path / "run"
    r = run_cli("train", "--cache", cache, "--name", "demo", "--out", run, "--config", out / "best.toml",
                "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "checkpoints" / "best.pt").exists() and "epochs = 1" in (run / "config.toml").read_text()
