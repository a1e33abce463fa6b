"""The DCASE 2025 baseline's optimisation recipe: warm-up + cosine per step, AdamW's decoupled weight decay, and
the text/projection knobs it needs (RoBERTa dropout, one Linear per tower), on real (tiny) models."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from audioret.trainer.config import load_config
from audioret.trainer.encoders.loading import ModelLoadError
from audioret.trainer.encoders.text import TextEncoder
from audioret.trainer.models import build_model
from audioret.trainer.schedule import Schedule, make_torch_optimizer, resume_problem
from benchmarks.random_models import random_text_model
from support import REPO

BASELINE = REPO / "configs" / "dcase2025_baseline.toml"


def baseline_lr(step: int, steps_per_epoch: int, max_lr: float = 2e-5, min_lr: float = 1e-7, warmup: int = 1,
                rampdown: int = 15) -> float:
    """The baseline's rate before step `step` (d25_t6/retrieval_module.py lr_scheduler_step, written out here)."""
    w, total = warmup * steps_per_epoch, (warmup + rampdown) * steps_per_epoch
    if step < w:
        return min_lr + (max_lr - min_lr) * step / w
    if step < total:
        return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * (step - w) / (total - w)))
    return min_lr


def scheduled_rates(cfg, steps_per_epoch: int, groups: list[float] | None = None) -> list[list[float]]:
    """The rate of each parameter group before every step of a whole run, from a real optimiser + Schedule."""
    params = [nn.Parameter(torch.zeros(1)) for _ in groups or [cfg.lr]]
    opt = torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, groups or [cfg.lr], strict=False)])
    schedule = Schedule(opt, cfg, steps_per_epoch)
    rates = []
    for _ in range(cfg.epochs):
        for _ in range(steps_per_epoch):
            rates.append([g["lr"] for g in opt.param_groups])
            opt.step()
            schedule.after_step()
        schedule.after_epoch()
    rates.append([g["lr"] for g in opt.param_groups])  # after the last step
    return rates


def test_cosine_is_the_baselines_curve_step_by_step() -> None:
    cfg = load_config(BASELINE)  # d25_t6/train.py: max_lr, min_lr, warmup_epochs, rampdown_epochs, max_epochs
    steps = 7
    got = [r[0] for r in scheduled_rates(cfg, steps)]
    want = [baseline_lr(k, steps) for k in range(len(got))]
    assert max(abs(a - b) for a, b in zip(got, want, strict=False)) < 1e-18
    assert got[0] == pytest.approx(1e-7) and got[steps] == pytest.approx(2e-5)  # warm-up: min_lr → lr in 1 epoch
    assert got[1] > got[0] and got[steps + 1] < got[steps]  # updated every step, not every epoch
    assert got[16 * steps:] == [pytest.approx(1e-7)] * (4 * steps + 1)  # epochs 17-20 at min_lr, as the baseline


def test_cosine_without_decay_epochs_ends_at_min_lr_and_scales_every_group() -> None:
    cfg = load_config(None, ["schedule=cosine", "lr=1e-3", "min_lr=1e-5", "warmup_epochs=0.5", "epochs=4"])
    rates = scheduled_rates(cfg, 10, groups=[1e-3, 4e-4])
    main = [r[0] for r in rates]
    assert main[0] == pytest.approx(1e-5) and main[5] == pytest.approx(1e-3)  # half an epoch of warm-up
    assert all(a > b for a, b in zip(main[5:-1], main[6:], strict=False))  # then strictly down to the last step
    assert main[-1] == pytest.approx(1e-5, rel=1e-9)  # = min_lr exactly at the end of the run
    assert all(r[1] == pytest.approx(r[0] * 0.4) for r in rates)  # the text group follows the same shape


def test_resume_may_change_epochs_unless_the_cosine_spans_the_run() -> None:
    old = load_config(None, ["schedule=cosine", "epochs=20"])
    message = resume_problem(old, load_config(None, ["schedule=cosine", "epochs=30"]))
    assert message and "epochs 20 → 30" in message and "decay_epochs" in message and "--init-from" in message
    assert resume_problem(old, load_config(None, ["schedule=cosine", "epochs=20"])) is None
    fixed = ["schedule=cosine", "warmup_epochs=1", "decay_epochs=15"]  # the curve no longer depends on epochs
    assert resume_problem(load_config(None, fixed + ["epochs=20"]), load_config(None, fixed + ["epochs=30"])) is None
    assert resume_problem(load_config(None, ["epochs=20"]), load_config(None, ["epochs=30"])) is None  # step


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("text-models")
    return {arch: str(random_text_model(root / arch, arch, "tiny")) for arch in ("bert", "roberta")}


def tiny_bi_encoder(text_model: str, *sets: str):
    cfg = load_config(None, [f"text_model={text_model}", "audio_width=0.125", "embed_dim=16", *sets])
    torch.manual_seed(0)
    return build_model(cfg, 64), cfg


@pytest.mark.parametrize("kind", ["adamw", "adam"])
def test_adamw_decays_weights_decoupled_from_the_gradient_adam_adds_them_to_it(tiny_models, kind: str) -> None:
    model, cfg = tiny_bi_encoder(tiny_models["roberta"], f"optimizer={kind}", "weight_decay=0.5", "lr=0.1",
                                 "learn_temperature=true")
    opt = make_torch_optimizer(model, cfg)
    assert type(opt) is {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[kind]
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8  # the baseline's values
    params = [p for g in opt.param_groups for p in g["params"]]
    assert any(p is model.log_scale for p in params)  # a learned temperature is optimised with the rest
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)  # no loss gradient: only the weight decay moves anything
    opt.step()
    for p, b in zip(params, before, strict=False):
        if kind == "adamw":  # decoupled: p ← p (1 − lr·wd), whatever Adam's moments
            torch.testing.assert_close(p.detach(), b * (1 - 0.1 * 0.5), rtol=1e-6, atol=0)
        else:  # L2: wd·p enters the gradient and Adam normalises it: a step of lr·sign(p)
            big = b.abs() > 1e-3
            torch.testing.assert_close(p.detach()[big], (b - 0.1 * b.sign())[big], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_text_dropout_reaches_every_dropout_of_the_transformer(tiny_models, arch: str) -> None:
    model, _ = tiny_bi_encoder(tiny_models[arch], "text_dropout=0.2")
    config = model.text.transformer.config
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0.2
    rates = {m.p for m in model.text.transformer.modules() if isinstance(m, nn.Dropout)}
    assert rates == {0.2}  # what runs, not only what the config says
    own, _ = tiny_bi_encoder(tiny_models[arch])  # None: the model's own rate
    assert own.text.transformer.config.hidden_dropout_prob == 0.1


def test_text_dropout_on_a_model_without_those_keys_is_a_one_line_error(tmp_path, tiny_models) -> None:
    from transformers import GPT2Config, GPT2Model

    from benchmarks.random_models import write_wordpiece_tokenizer

    folder = tmp_path / "gpt2"
    tokenizer = write_wordpiece_tokenizer(folder)
    GPT2Model(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2)).save_pretrained(folder)
    TextEncoder(str(folder), embed_dim=8)  # loads without an override
    with pytest.raises(ModelLoadError) as err:
        TextEncoder(str(folder), embed_dim=8, dropout=0.2)
    text = str(err.value)
    assert "\n" not in text and str(folder) in text and "GPT2Config has none of hidden_dropout_prob" in text


def test_projection_linear_is_one_linear_layer_on_both_towers(tiny_models) -> None:
    model, cfg = tiny_bi_encoder(tiny_models["roberta"], "projection=linear")
    assert [type(m) for m in model.text.proj] == [nn.Linear]
    assert (model.text.proj[0].in_features, model.text.proj[0].out_features) == (32, 16)
    audio_linears = [m for m in model.audio.modules() if isinstance(m, nn.Linear)]
    assert len(audio_linears) == 1 and audio_linears[0].out_features == 16 and model.audio.fc1 is None
    mlp, _ = tiny_bi_encoder(tiny_models["roberta"])  # the paper's head: Linear → ReLU → Linear on both
    assert [type(m) for m in mlp.text.proj] == [nn.Linear, nn.ReLU, nn.Linear]
    assert sum(isinstance(m, nn.Linear) for m in mlp.audio.modules()) == 2


def test_padding_to_32_tokens_as_the_baseline_leaves_the_first_token_unchanged(tiny_models) -> None:
    """The baseline pads every caption to 32 tokens (padding='max_length'); the project pads to the batch's
    longest. With the attention mask (and RoBERTa's positions counted from the pad id) the first token is the same."""
    torch.manual_seed(0)
    encoder = TextEncoder(tiny_models["roberta"], embed_dim=8, projection="linear").eval()
    texts = ["a dog barks", "rain falls on a tin roof while thunder rumbles"]
    ours = encoder.tokenize(texts)
    theirs = dict(encoder.tokenizer(texts, padding="max_length", max_length=32, truncation=True, return_tensors="pt"))
    assert ours["input_ids"].shape[1] < 32 == theirs["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(encoder.forward_tokens(ours), encoder.forward_tokens(theirs), atol=1e-6, rtol=0)
