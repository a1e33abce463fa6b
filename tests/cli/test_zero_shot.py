"""`audioret eval --zero-shot <CLAP>` (trainer/zero_shot.py) through the real CLI: a tiny random ClapModel with
its ClapProcessor (tokenizer built offline, tests/support/hf_models.py) scored on a generated dataset prepped with
`prep audio --features hf:<the same CLAP>` ranks exactly as CLAP's own towers rank the decoded audio and the
captions; a cache of another feature is refused naming both; misuse of the options is a usage error."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from support import run_cli
from support.demo import build_demo_cache
from support.hf_models import tiny_clap


@pytest.fixture(scope="module")
def clap_cache(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    model = tiny_clap(base / "zero-shot-clap")  # its extractor takes 1 s: the generated clips are exactly 1 s
    return build_demo_cache(base, features=f"hf:{model}"), model


def clap_similarity(model, cache, verbatim: bool = True) -> tuple[torch.Tensor, list[str], list[tuple[str, int, str]]]:
    """(captions × clips) cosine similarities by CLAP's own towers on its processor's output for the decoded
    evaluation clips (the decoder `prep audio` uses) and the captions verbatim (`ClapProcessor(text=raw)`; with
    `verbatim=False` the cache's normalised captions instead)."""
    from transformers import ClapModel, ClapProcessor

    from audioret.cache.audio_shards import AudioCache
    from audioret.cache.caption_shards import CaptionCache
    from audioret.pipeline.audio_io import load_mono
    from audioret.pipeline.feature_defs import feature_definition

    clap, processor = ClapModel.from_pretrained(model).eval(), ClapProcessor.from_pretrained(model)
    clips = AudioCache.open(cache, name="demo").ids_for_split("evaluation")
    captions = CaptionCache.open(cache, name="demo")
    rows = [(c, i, captions.raw(c)[i] if verbatim else t) for c, i, t in captions.all_captions("evaluation")]
    # The generated captions are written as people write them ("A quiet beep repeats while noise hums."): the
    # cache's normalised form differs from every one of them, so a model fed that form ranks differently.
    assert all(captions.raw(c)[i] != t for c, i, t in captions.all_captions("evaluation"))
    defn = feature_definition(f"hf:{model}")
    waves = [load_mono(cache.parent / "data" / "evaluation" / c, defn) for c in clips]
    audio = processor.feature_extractor(waves, sampling_rate=48000, return_tensors="pt")
    assert audio["input_features"].shape == (len(clips), 4, 101, 64)
    # No clip is longer than 1 s; the extractor marks one at random as longer anyway (LAION-CLAP's HTSAT does so in
    # any batch without a long clip), which evaluation does not do: every clip is embedded as what it is
    # (docs/training.md).
    not_longer = torch.zeros(len(clips), 1, dtype=torch.bool)
    text = processor(text=[t for _, _, t in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = clap.get_audio_features(input_features=audio["input_features"], is_longer=not_longer).pooler_output
        t = clap.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).pooler_output
    return t @ a.T, clips, rows


def test_zero_shot_ranks_as_clap_itself_does(clap_cache, tmp_path) -> None:
    cache, model = clap_cache
    out = tmp_path / "reports"
    proc = run_cli("eval", "--zero-shot", model, "--cache", cache, "--name", "demo", "--out", out, check=True)
    assert proc.stdout.startswith(f"zero-shot hf:{model} · evaluation · relevance:")
    result = json.loads((out / "eval-evaluation.json").read_text())
    assert (result["n_captions"], result["n_clips"], result["model"]) == (40, 8, f"hf:{model}")
    sim, clips, rows = clap_similarity(model, cache)
    ranks = [1 + int((sim[i] > sim[i, clips.index(c)]).sum()) for i, (c, _, _) in enumerate(rows)]
    assert result["map10"] == pytest.approx(np.mean([1 / r if r <= 10 else 0 for r in ranks]), abs=1e-6)
    assert result["r1"] == pytest.approx(np.mean([r == 1 for r in ranks]), abs=1e-6)
    with open(out / "submission-evaluation.csv", newline="", encoding="utf-8") as f:
        submitted = [r[1:] for r in list(csv.reader(f))[1:]]
    by_hand = [[clips[j] for j in torch.argsort(-row, stable=True)[:8].tolist()] for row in sim]
    assert submitted == by_hand
    assert f"{result['map10']:.4f}" in proc.stdout


def test_clap_reads_each_caption_verbatim_as_its_processor_does(clap_cache) -> None:
    """The similarities themselves, not only the ranks: the text tower gets `ClapProcessor(text=raw)`'s ids. Fed
    the cache's normalised captions instead (lower case, no punctuation), every similarity moves."""
    from audioret.trainer.zero_shot import score_zero_shot

    cache, model = clap_cache
    split, scores = score_zero_shot(str(model), cache, "demo", device="cpu")
    sim, clips, rows = clap_similarity(model, cache)
    assert split == "evaluation" and scores.clip_ids == clips
    assert scores.caption_raw == [t for _, _, t in rows]
    assert (scores.similarity - sim).abs().max() < 1e-5  # the float16 cache only
    normalised = clap_similarity(model, cache, verbatim=False)[0]
    assert (normalised - sim).abs().max() > 1e-3


def test_a_cache_of_other_features_is_refused_naming_both(clap_cache, tmp_path) -> None:
    from audioret.cache.audio_shards import build_audio_cache
    from audioret.pipeline.feature_defs import feature_definition

    _, model = clap_cache
    build_audio_cache(tmp_path, {"a.wav": np.zeros((50, 64), np.float32)}, feature_definition("panns").cache_config(),
                      name="clotho")
    proc = run_cli("eval", "--zero-shot", model, "--cache", tmp_path, "--name", "clotho", "--out", tmp_path / "o")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "panns-logmel" in lines[0] and f"needs hf:{model}" in lines[0] and f"--features hf:{model}" in lines[0]


def test_a_cache_fits_by_its_extractor_settings_not_by_how_the_name_was_typed(clap_cache, tmp_path) -> None:
    """The cache was prepped with `--features hf:/abs/zero-shot-clap`: a trailing slash or a relative spelling of
    that folder is the same extractor (accepted); another folder of that relative name whose extractor keeps only
    2–6 kHz (the same model weights) is not, and the refusal names the settings that differ."""
    cache, model = clap_cache
    args = ("--cache", cache, "--name", "demo", "--out", tmp_path / "o")
    reference = run_cli("eval", "--zero-shot", model, *args, check=True).stdout.splitlines()[-2:]
    for spelling, cwd in ((f"{model}/", None), (model.name, model.parent), (f"./{model.name}/", model.parent)):
        proc = run_cli("eval", "--zero-shot", spelling, *args, cwd=cwd, check=True)
        assert proc.stdout.splitlines()[-2:] == reference, spelling  # the same scores
    tiny_clap(tmp_path / model.name, frequency_min=2000, frequency_max=6000)
    proc = run_cli("eval", "--zero-shot", model.name, *args, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "settings than the hf:zero-shot-clap encoder's (cache ≠ encoder): frequency_max 14000 ≠ 6000, " \
           "frequency_min 0 ≠ 2000 (re-run" in lines[0]
    assert f"--features hf:{model.name}" in lines[0]


@pytest.mark.parametrize("args, says", [
    ([], "give RUN_DIR, or --zero-shot"),
    (["--zero-shot", "some/clap", "--cache", "."], "give --out"),
    (["--zero-shot", "some/clap", "--cache", ".", "--out", "o", "--checkpoint", "last"], "drop --checkpoint"),
    ([".", "--name", "clotho"], "--cache and --name go with --zero-shot"),
])
def test_option_misuse_is_a_usage_error(args: list[str], says: str) -> None:
    from click.testing import CliRunner

    from audioret.cli import main

    result = CliRunner().invoke(main, ["eval", *args])
    assert result.exit_code == 2 and says in result.output, result.output
