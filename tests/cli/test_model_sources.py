"""Models named by the user (cache/hub.py): a missing folder is "folder not found", a hub name without a reachable
hub fails at once instead of after ~50 s of retries, and `max_tokens` beyond a text model's positions is a usage
error. Real CLI subprocesses; the "hub" is a loopback port that refuses connections (bound, never listening), so
nothing here touches the internet."""
from __future__ import annotations

import socket
import subprocess

import pytest

from audioret.cache import hub
from support import AUDIO, cli_cmd, cli_env, run_cli
from support.demo import fast_overrides
from support.hf_models import tiny_roberta


def test_a_missing_folder_is_folder_not_found_not_a_bad_repo_id(tmp_path):
    proc = run_cli("prep", "audio", "--dataset", "folder", "--root", AUDIO / "animals_cc0", "--cache", tmp_path,
                   "--features", f"hf:{tmp_path / 'missing'}")
    assert proc.returncode == 2 and f"hf:{tmp_path / 'missing'}: folder not found" in proc.stderr, proc.stderr
    assert "Repo id" not in proc.stderr
    for source, problem in ((str(tmp_path / "nope"), "folder not found"), ("./rel/clap", "folder not found"),
                            (str(AUDIO / "animals_cc0" / "cat.mp3"), "not a folder")):
        with pytest.raises(hub.PretrainedSourceError, match=problem):
            hub.check_source(source)
    hub.check_source(str(tmp_path))  # an existing folder passes, whatever the hub


def test_a_hub_name_without_a_reachable_hub_fails_at_once(tmp_path):
    env = {k: v for k, v in cli_env().items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    with socket.socket() as sock:  # bound but not listening: connections are refused, and no one else takes it
        sock.bind(("127.0.0.1", 0))
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # without the probe huggingface_hub retried every file with back-off: about a minute before this error
        proc = subprocess.run(cli_cmd("prep", "audio", "--dataset", "folder", "--root", AUDIO / "animals_cc0",
                                      "--cache", tmp_path, "--features", "hf:some-org/some-model"),
                              capture_output=True, text=True, env=env, timeout=40)
    assert proc.returncode == 2, proc.stderr
    assert f"{env['HF_ENDPOINT']} cannot be reached from here" in proc.stderr
    assert "Retrying" not in proc.stderr


def test_the_text_model_says_folder_not_found_too(demo_cache, tmp_path):
    proc = run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", tmp_path / "run",
                   *fast_overrides(1, [f"text_model={tmp_path / 'bert'}"]), "--no-progress")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and errors == [f"error: text model '{tmp_path / 'bert'}': folder not found"], \
        proc.stderr


def test_max_tokens_beyond_the_text_models_positions_is_a_usage_error(demo_cache, tmp_path):
    """`--set max_tokens=200` with a 64-position RoBERTa: one line naming the limit, exit 2 (was a raw "index 64 is
    out of bounds" mid-epoch)."""
    roberta = tiny_roberta(tmp_path / "roberta")
    proc = run_cli("train", "--cache", demo_cache, "--name", "demo", "--out", tmp_path / "run",
                   *fast_overrides(1, [f"text_model={roberta}", "max_tokens=200"]), "--no-progress")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert "max_tokens=62 or less" in errors[0] and "out of bounds" not in proc.stderr


def test_offline_set_by_the_user_is_left_to_huggingface_hub(monkeypatch):
    """HF_HUB_OFFLINE=1: the hub is never asked, so there is nothing to probe and no hint about reaching it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{sock.getsockname()[1]}")
        assert not hub.hub_reachable(1.0)
        hub.check_source("some-org/some-model")
    assert hub.unreachable_hint() == ""
