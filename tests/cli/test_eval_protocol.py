"""`eval` and `retrieve` on a real trained run, through the real CLI: the DCASE 2022 submission scores with the
official scorer's logic exactly as `eval` reports (captions with surrounding spaces included), DCASE 2025
relevance files score several relevant clips, a corrupt embeddings cache is rebuilt, and a read-only run
directory still serves `retrieve` (user cache dir) and `eval --out`."""
from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from support import cli_cmd, cli_env, run_cli, write_csv
from support.demo import fast_overrides

NOBODY = 65534
# Clotho's evaluation split has captions ending in a space; these edits add such cases (and a quoted comma).
WHITESPACE = {(0, 1): "{} ", (1, 2): " {}", (2, 3): "  {}  ", (3, 5): "{}   ", (4, 1): 'A "quoted", comma {} '}


@pytest.fixture(scope="module")
def world():
    """Demo dataset (its evaluation captions given surrounding spaces) → real caches → a 1-epoch run.

    Built in a 0755 temp folder rather than pytest's 0700 one, so an unprivileged user can read it when the
    suite runs as root (the read-only test drops privileges there)."""
    root = Path(tempfile.mkdtemp(prefix="audioret-eval-"))
    os.chmod(root, 0o755)
    data, cache, run = root / "data", root / "cache", root / "run"
    subprocess.run([sys.executable, "-m", "audioret.cli.demo_data", "--out", str(data), "--clips", "16,8,8",
                    "--seconds", "1.0"], check=True, env=cli_env(), capture_output=True)
    gt = data / "clotho_captions_evaluation.csv"
    rows = list(csv.reader(gt.open(newline="", encoding="utf-8")))
    for (r, c), form in WHITESPACE.items():
        rows[1 + r][c] = form.format(rows[1 + r][c])
    write_csv(gt, rows[0], rows[1:])
    for stage in (["audio", "--workers", "1", "--no-progress"], ["captions", "--translator", "none"]):
        run_cli("prep", stage[0], "--dataset", "clotho", "--root", data, "--cache", cache, "--name", "demo",
                *stage[1:], check=True)
    run_cli("train", "--cache", cache, "--name", "demo", "--out", run, *fast_overrides(1), "--no-progress",
            check=True)
    captions = [c for row in rows[1:] for c in row[1:]]
    assert len(set(captions)) == len(captions)  # the official scorer keys on caption text: keep them unique
    yield SimpleNamespace(root=root, gt=gt, run=run, rows=rows[1:])
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(root, ignore_errors=True)


def official_scores(gt_csv: Path, submission_csv: Path) -> dict[str, float]:
    """The DCASE 2022 task 6b scorer's logic, re-implemented from its published description (eval_script.py of
    github.com/xieh97/dcase2022-audio-retrieval; it reads both files with pandas, which keeps whitespace):
    ground truth caption text → file name from every caption column; submission row by column position,
    caption text → fname_1..fname_10; per ground-truth caption R@1/5/10 and AP@10 = Σ i/position over hits."""
    with open(gt_csv, newline="", encoding="utf-8") as f:
        gt = {cap: row[0] for row in list(csv.reader(f))[1:] for cap in row[1:]}
    with open(submission_csv, newline="", encoding="utf-8") as f:
        pred = {row[0]: row[1:] for row in list(csv.reader(f))[1:]}
    out: dict[str, list[float]] = {"r1": [], "r5": [], "r10": [], "map10": []}
    for cap, fname in gt.items():
        hits = [p == fname for p in pred[cap]]  # KeyError when a caption was not written verbatim
        for k in (1, 5, 10):
            out[f"r{k}"].append(float(sum(hits[:k])))
        positions = [i + 1 for i, h in enumerate(hits[:10]) if h]
        out["map10"].append(sum(j / p for j, p in enumerate(positions, start=1)))
    return {k: sum(v) / len(v) for k, v in out.items()}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_submission_scores_like_eval_with_the_official_scorer_captions_verbatim(world):
    proc = run_cli("eval", world.run, check=True)
    result = read_json(world.run / "eval-evaluation.json")
    with open(world.run / "submission-evaluation.csv", newline="", encoding="utf-8") as f:
        written = [row[0] for row in csv.reader(f)][1:]
    for (r, c) in WHITESPACE:
        assert world.rows[r][c] in written  # e.g. "... " with its trailing space
    assert official_scores(world.gt, world.run / "submission-evaluation.csv") == pytest.approx(
        {k: result[k] for k in ("r1", "r5", "r10", "map10")}, abs=1e-12)
    assert {"map16", "a2t_map10", "a2t_r1", "a2t_r5", "a2t_r10", "chance_map16"} <= set(result)
    assert "text→audio" in proc.stdout and "audio→text" in proc.stdout and f"{result['map16']:.4f}" in proc.stdout


def test_relevance_file_scores_several_relevant_clips(world, tmp_path):
    clips = [row[0] for row in world.rows]
    q_space, q2, q3 = world.rows[0][1], world.rows[5][2], world.rows[6][1]  # q_space ends in a space
    relevance = {q_space: [clips[0], clips[3]], q2: [clips[5], clips[1], clips[7], "nope.wav"], q3: [clips[6]],
                 "a caption of no clip": [clips[2]]}
    rel = tmp_path / "metadata_eval.csv"
    write_csv(rel, ["query", "audio_filenames"], [[q, repr(v)] for q, v in relevance.items()])
    out = tmp_path / "reports"
    proc = run_cli("eval", world.run, "--relevance", rel, "--out", out, check=True)
    result = read_json(out / "eval-evaluation.json")
    with open(out / "submission-evaluation.csv", newline="", encoding="utf-8") as f:
        ranking = {row[0]: row[1:] for row in list(csv.reader(f))[1:]}  # all 8 clips: the full ranking
    expected: dict[str, list[float]] = {"map10": [], "map16": [], "r1": []}
    for q in (q_space, q2, q3):  # by hand: ranks of the relevant clips the split has, AP over |R| of those
        ranks = sorted(ranking[q].index(c) + 1 for c in relevance[q] if c in clips)
        for k in (10, 16):
            expected[f"map{k}"].append(sum(i / r for i, r in enumerate(ranks, 1) if r <= k) / len(ranks))
        expected["r1"].append(float(ranks[0] == 1))
    assert {k: result[k] for k in expected} == pytest.approx({k: sum(v) / 3 for k, v in expected.items()})
    report = result["relevance"]
    assert (report["queries"], report["scored"], result["n_queries"]) == (4, 3, 3)
    assert report["queries_not_in_split"] == {"count": 1, "first": ["a caption of no clip"]}
    assert report["files_not_in_split"] == {"count": 1, "first": ["nope.wav"]}
    assert "1 files not in split" in proc.stderr and "1 queries not in split" in proc.stderr
    assert not (world.run / "eval-evaluation.json").exists() or read_json(
        world.run / "eval-evaluation.json")["relevance"] == "each caption's own clip"  # --out left RUN_DIR alone


def test_score_split_audio_to_text_uses_each_clips_own_captions(world):
    import torch

    from audioret.trainer.evaluate import LoadedRun, score_split

    run = LoadedRun(world.run, "best", "cpu")
    audio, captions = run.open_caches()
    s = score_split(run.model, audio, captions, "evaluation", run.device)
    assert len(s.caption_raw) == len(s.caption_clip) == len(s.caption_index) == s.similarity.shape[0] == 40
    assert s.caption_raw[0] == world.rows[0][1] and s.clip_ids == sorted(s.clip_ids)
    aps, r1 = [], []
    for j, clip in enumerate(s.clip_ids):  # by hand: captions ranked by score, ties by row order
        order = sorted(range(40), key=lambda i: (-float(s.similarity[i, j]), i))
        ranks = sorted(order.index(i) + 1 for i in range(40) if s.caption_clip[i] == clip)
        aps.append(sum(i / r for i, r in enumerate(ranks, 1) if r <= 10) / len(ranks))
        r1.append(float(ranks[0] == 1))
    assert (s.metrics["a2t_map10"], s.metrics["a2t_r1"]) == pytest.approx((sum(aps) / 8, sum(r1) / 8))
    assert isinstance(s.similarity, torch.Tensor) and s.relevance is None


def test_corrupt_embeddings_cache_is_rebuilt(world, tmp_path):
    args = ("retrieve", world.run, "a high beep repeats", "-k", "8", "--json")
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    key = read_json(world.run / "run.json")["audio_key"]
    cached = world.run / "embeddings" / f"{key[:16]}-evaluation-best.pt"  # where retrieve caches this split
    cached.parent.mkdir(exist_ok=True)
    cached.write_bytes(b"PK\x03\x04 garbage, as a crash or a full disk leaves it")
    first = run_cli(*args, check=True, env=env)
    warnings = [ln for ln in first.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(cached) in warnings[0] and "rebuilding" in warnings[0], first.stderr
    second = run_cli(*args, check=True, env=env)
    assert "warning" not in second.stderr and cached.stat().st_size > 1000
    assert json.loads(first.stdout) == json.loads(second.stdout) and len(json.loads(first.stdout)[0]["results"]) == 8


def _unprivileged_prefix(root: Path) -> list[str]:
    """[] for a normal user; as root (where file modes do not stop writes) a setpriv prefix to run as nobody."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root, where read-only modes do not block writes, and setpriv is missing")
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import audioret.cli, audioret.trainer.evaluate"],
                           env=cli_env(), cwd=root, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and user nobody cannot import this checkout: {probe.stderr[-200:]}")
    return prefix


def test_read_only_run_directory(world):
    prefix = _unprivileged_prefix(world.root)
    xdg, out = world.root / "xdg", world.root / "reports"
    for d in (xdg, out):
        d.mkdir()
        os.chmod(d, 0o777)
    shutil.rmtree(world.run / "embeddings", ignore_errors=True)
    env = cli_env({"XDG_CACHE_HOME": str(xdg), "HOME": str(xdg)})

    def cli(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *cli_cmd(*map(str, args))], env=env, cwd=world.root, capture_output=True,
                              text=True, timeout=300)

    modes = {}
    for dirpath, _dirnames, filenames in os.walk(world.run):
        for p in [Path(dirpath), *(Path(dirpath) / n for n in filenames)]:
            modes[p] = p.stat().st_mode
            os.chmod(p, modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        first = cli("retrieve", world.run, "a low noise hums", "--json")
        assert first.returncode == 0, first.stderr
        [cached] = (xdg / "audioret" / "runs").glob("run-*/embeddings/*-evaluation-best.pt")
        stamp = cached.stat().st_mtime_ns
        second = cli("retrieve", world.run, "a low noise hums", "--json")
        assert second.returncode == 0 and second.stdout == first.stdout, second.stderr
        assert cached.stat().st_mtime_ns == stamp and not (world.run / "embeddings").exists()  # served, not rebuilt
        refused = cli("eval", world.run)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "not writable" in refused.stderr and "--out" in refused.stderr and "enforce fail" not in refused.stderr
        done = cli("eval", world.run, "--out", out)
        assert done.returncode == 0, done.stderr
        assert (out / "eval-evaluation.json").is_file() and (out / "submission-evaluation.csv").is_file()
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)
