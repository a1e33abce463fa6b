"""TrainConfig: defaults are the paper's, TOML + --set overrides, and every bad value is a one-line usage error."""
from __future__ import annotations

import tomllib

import pytest
import torch

from audioret.trainer.config import (
    ConfigError,
    check_audio_checkpoint,
    diff,
    load_config,
    resolve_split,
    save_config,
)
from support import run_cli


def test_defaults_are_the_papers_best_trial_and_recipe():
    c = load_config()
    assert (c.epochs, c.batch_size, c.lr, c.lr_step, c.patience) == (50, 30, 2e-5, 10, 10)
    assert c.lr_gamma == pytest.approx(1 / 3) and c.effective_text_lr() == c.lr
    assert (c.p_eda, c.p_syn, c.p_swp, c.p_del, c.p_ins, c.p_bt) == (.9936, .2962, .0085, .1944, 0.0, .1812)
    assert (c.n_f, c.w_f, c.n_t, c.w_t, c.g_max, c.p_ms, c.ms_alpha) == (1, 4, 7, 58, 3.0, .1045, .8286)
    assert (c.text_model, c.max_tokens, c.embed_dim, c.audio_width) == ("bert-base-uncased", 32, 1024, 1.0)


def test_toml_then_overrides_and_round_trip(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('epochs = 7\nlr = 1e-4\ntext_model = "some/path"\n[unused]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unexpected table"):
        load_config(f)
    f.write_text('[train]\nepochs = 7\nlr = 1e-4\nlearn_temperature = true\n', encoding="utf-8")
    c = load_config(f, ["epochs=9", "text_lr=1e-5", "lr_gamma=1/2", "device=cuda:1"])
    assert (c.epochs, c.lr, c.text_lr, c.lr_gamma, c.learn_temperature, c.device) == (9, 1e-4, 1e-5, .5, True, "cuda:1")
    (tmp_path / "run").mkdir()
    out = save_config(c, tmp_path / "run" / "config.toml")
    assert load_config(out) == c
    saved = {k for k, v in c.to_dict().items() if v is not None}  # None (text_dropout: the model's own) = default
    assert set(tomllib.loads(out.read_text())) == saved  # the whole config is saved
    c2 = load_config(None, ["text_lr=none"])
    assert c2.text_lr is None and "text_lr" not in tomllib.loads(save_config(c2, tmp_path / "n.toml").read_text())
    assert load_config(tmp_path / "n.toml") == c2


@pytest.mark.parametrize("override,message", [
    ("no_such=1", "unknown config key"),
    ("p_syn=0.31", "'p_syn': 0.31 is out of range [0, 0.3]"),
    ("n_f=2", "'n_f': 2 is out of range [0, 1]"),
    ("w_t=0", "'w_t': 0 is out of range [1, 64]"),
    ("g_max=7", "out of range [0, 6]"),
    ("ms_alpha=-0.1", "out of range"),
    ("epochs=1.5", "not a valid int"),
    ("epochs=true", "not a valid int"),
    ("lr=0", "must be > 0"),
    ("lr=nan", "not a valid float"),
    ("learn_temperature=maybe", "not a valid bool"),
    ("resident=disk", "not one of auto, ram, gpu, stream"),
    ("device=tpu", "not auto, cpu, cuda or cuda:N"),
    ("epochs", "expected key=value"),
])
def test_bad_values_are_config_errors(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    bad.write_text("p_del = 0.9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml: .*p_del"):
        load_config(bad)


def test_split_aliases_and_diff():
    assert resolve_split("train", ["development", "validation"]) == "development"
    assert resolve_split("train", ["train", "val", "test"]) == "train"
    assert resolve_split("validation", ["train", "val"]) == "val"
    assert resolve_split("test", ["evaluation"]) == "evaluation"
    with pytest.raises(ConfigError, match="not found"):
        resolve_split("validation", ["development"])
    a, b = load_config(), load_config(None, ["epochs=3", "lr=1e-3"])
    assert diff(a, b) == {"epochs": (50, 3), "lr": (2e-5, 1e-3)} and diff(a, b, {"epochs", "lr"}) == {}


@pytest.mark.parametrize("width, exists, message", [
    ("1", False, "checkpoint not found"), ("0.5", False, "checkpoint not found"),
    ("0.5", True, "needs audio_width=1 (PANNs' CNN10 channel counts), got audio_width=0.5"),
])
def test_audio_checkpoint_is_checked_before_caches_and_text_model(tmp_path, width, exists, message):
    """Through the real CLI on an empty cache root and a text model that does not exist: the config error must
    come first (exit 2), not "no complete audio cache" or a text-model load failure."""
    ckpt = tmp_path / "Cnn10_mAP=0.380.pth"
    if exists:
        torch.save({"model": {}}, ckpt)
    (tmp_path / "cache").mkdir()
    proc = run_cli("train", "--cache", tmp_path / "cache", "--out", tmp_path / "run", "--no-progress",
                   "--set", f"audio_checkpoint={ckpt}", "--set", f"audio_width={width}",
                   "--set", f"text_model={tmp_path / 'no-such-model'}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: config key 'audio_checkpoint': {ckpt}: {message}" if not exists
        else f"error: config key 'audio_checkpoint' {message}; drop one of the two")
    assert not (tmp_path / "run").exists()
    check_audio_checkpoint(load_config(None, ["audio_width=0.5"]))  # no checkpoint: any width is fine


def test_audio_checkpoint_is_matched_through_the_encoder_on_the_meta_device(tmp_path):
    """A file for the other encoder is a usage error naming it, before anything is built for real; a file that
    fits passes; hf encoders take no audio_checkpoint."""
    from audioret.trainer.encoders.passt import PaSST

    tiny = ["audio_encoder=passt", "passt_width=64", "passt_depth=1"]
    torch.save(PaSST(width=64, depth=1).state_dict(), tmp_path / "passt.pt")
    check_audio_checkpoint(load_config(None, [*tiny, f"audio_checkpoint={tmp_path / 'passt.pt'}"]))
    with pytest.raises(ConfigError, match=r"passt\.pt: no CNN10 keys \(bn0\.\*, conv_block\*\.\*\) match"):
        check_audio_checkpoint(load_config(None, [f"audio_checkpoint={tmp_path / 'passt.pt'}"]))
    with pytest.raises(ConfigError, match="its weights load by name"):
        check_audio_checkpoint(load_config(None, ["audio_encoder=hf:some/model",
                                                  f"audio_checkpoint={tmp_path / 'passt.pt'}"]))
