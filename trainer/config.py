"""One plain training configuration (nanoGPT style): a dataclass, a TOML file, `key=value` overrides.

Why one flat dataclass: every knob a run or a hyperparameter search can turn is visible in one place, is saved
whole into RUN_DIR/config.toml (so a run can be repeated or resumed), and is validated once, up front: an unknown
key or an out-of-range value is a usage error (`ConfigError`, CLI exit 2) before any model is built.

The augmentation ranges are the paper's search space (Table 4, trainer/search/space.py); the defaults are its best
trial.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from audioret.cache.publish import publish_file
from audioret.cache.splits import split_names


class ConfigError(ValueError):
    """A bad configuration (unknown key, wrong type, value out of range): a usage error."""


@dataclass
class TrainConfig:
    # optimisation (the paper: Adam, batch 30, 50 epochs, ×1/3 every 10 epochs, patience 10)
    epochs: int = 50
    batch_size: int = 30
    lr: float = 2e-5
    text_lr: float | None = None  # None → lr; 0 freezes the pretrained text transformer (no backward through it)
    lr_step: int = 10
    lr_gamma: float = 1.0 / 3.0
    optimizer: str = "adam"  # adam (paper) | adamw (DCASE 2025 baseline)
    weight_decay: float = 0.0  # decoupled (adamw) or L2 (adam)
    schedule: str = "step"  # step: ×lr_gamma every lr_step epochs (paper) | cosine: warm-up, then cosine to min_lr
    warmup_epochs: float = 0.0  # cosine: linear warm-up from min_lr to lr over this many epochs (per step)
    decay_epochs: float | None = None  # cosine: epochs of the decay to min_lr after the warm-up (None: the rest of
    #                                    the run); later epochs stay at min_lr (trainer/schedule.py)
    min_lr: float = 0.0  # cosine: where the warm-up starts and the decay ends
    patience: int = 10  # epochs without a better validation mAP@10 before stopping; 0 = never stop early
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    seed: int = 0
    keep_last: bool = False  # keep last.pt's optimiser/RNG state after the run ends (to extend it with --resume)
    # hardware / data path
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 2  # DataLoader workers in streamed mode
    resident: str = "auto"  # auto | ram | gpu | stream
    memory_budget_gb: float = 8.0  # resident features (float16) must fit this budget in "auto" mode
    max_seconds: float = 30.0  # random training crop; evaluation always embeds whole clips
    eval_batch_size: int = 64
    # model
    audio_encoder: str = "cnn10"  # cnn10 | passt | hf:<transformers name or path> (trainer/encoders/)
    audio_width: float = 1.0  # cnn10 only: channel multiplier
    audio_checkpoint: str = ""  # PANNs Cnn10 or PaSST state dict; "" = cnn10 from scratch / passt random init
    patchout_t: int = 15  # passt, training only: patch columns (time) dropped, the same for the whole batch
    patchout_f: int = 2  # passt, training only: patch rows (frequency) dropped (structured patchout)
    segment_seconds: float = 10.0  # passt: longer clips are embedded in segments of this length, then averaged
    passt_width: int = 768  # passt: transformer width, a multiple of 64 (one head per 64); PaSST-S 768, tests 64
    passt_depth: int = 12  # passt: transformer blocks; PaSST-S 12
    passt_stride: int = 10  # passt: 16×16 patch stride; 10: the ap476-swa checkpoint, 16: the ap468 one (passt.py)
    projection: str = "mlp"  # mlp: Linear-ReLU-Linear, hidden 2048 (paper) | linear: one Linear (baseline)
    init_from: str = ""  # another run's dir: start from its best weights (AudioCaps pretrain → Clotho fine-tune)
    # more datasets: training captions of other caches in the same cache root, "name" or "name:weight" each
    # (trainer/sources.py); validation and early stopping stay on the main cache (`--name`)
    extra: list[str] = field(default_factory=list)
    text_model: str = "bert-base-uncased"
    text_dropout: float | None = None  # None: the text model's own dropout; the baseline sets 0.2 (RoBERTa-large)
    max_tokens: int = 32
    text_normalisation: str = "audioret"  # audioret: the cache's normalised captions (pipeline/text.py) | dcase2025:
    #                                       the baseline's: raw caption lower-cased, ASCII punctuation deleted
    embed_dim: int = 1024
    temperature: float = 0.07
    learn_temperature: bool = False
    # text augmentation: back-translation substitution, then EDA (paper's best trial)
    p_bt: float = 0.1812
    p_eda: float = 0.9936
    p_syn: float = 0.2962
    p_swp: float = 0.0085
    p_del: float = 0.1944
    p_ins: float = 0.0
    # audio augmentation: SpecAugment, gain, Freq-MixStyle (paper's best trial)
    n_f: int = 1
    w_f: int = 4
    n_t: int = 7
    w_t: int = 58
    g_max: float = 3.0
    p_ms: float = 0.1045
    ms_alpha: float = 0.8286

    def effective_text_lr(self) -> float:
        return self.lr if self.text_lr is None else self.text_lr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# (min, max) inclusive; None = unbounded on that side. Augmentation bounds are Table 4's search space.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "epochs": (1, None), "batch_size": (2, None), "lr": (0.0, None), "text_lr": (0.0, None),
    "lr_step": (1, None), "lr_gamma": (0.0, 1.0), "patience": (0, None), "grad_clip": (0.0, None),
    "seed": (0, 2**63 - 1), "num_workers": (0, 64), "memory_budget_gb": (0.0, None), "max_seconds": (0.01, 3600.0),
    "eval_batch_size": (1, None), "audio_width": (0.01, 4.0), "max_tokens": (2, 512), "embed_dim": (1, 65536),
    "temperature": (1e-4, 10.0), "weight_decay": (0.0, None), "warmup_epochs": (0.0, None), "min_lr": (0.0, None),
    "decay_epochs": (0.0, None), "patchout_t": (0, None), "patchout_f": (0, None), "segment_seconds": (0.1, 3600.0),
    "text_dropout": (0.0, 1.0), "passt_width": (64, 4096), "passt_depth": (1, 64), "passt_stride": (1, 16),
    "p_bt": (0.0, 1.0), "p_eda": (0.0, 1.0), "p_syn": (0.0, 0.3), "p_swp": (0.0, 0.3), "p_del": (0.0, 0.3),
    "p_ins": (0.0, 0.3), "n_f": (0, 1), "w_f": (1, 32), "n_t": (0, 8), "w_t": (1, 64), "g_max": (0.0, 6.0),
    "p_ms": (0.0, 1.0), "ms_alpha": (0.0, 1.0),
}
TRUE_WORDS = ("true", "1", "yes", "on")
STRICTLY_POSITIVE = {"lr", "lr_gamma", "temperature"}
CHOICES: dict[str, tuple[str, ...]] = {"resident": ("auto", "ram", "gpu", "stream"), "projection": ("mlp", "linear"),
                                      "optimizer": ("adam", "adamw"), "schedule": ("step", "cosine"),
                                      "text_normalisation": ("audioret", "dcase2025")}

def resolve_split(role_or_name: str, available: list[str] | set[str]) -> str:
    """The split name present in a cache for a role ("train"/"validation"/"evaluation") or an alias of one
    (cache/splits.py: Clotho's names first; manifests may use the short ones)."""
    available = set(available)
    for n in split_names(role_or_name):
        if n in available:
            return n
    if role_or_name in available:
        return role_or_name
    raise ConfigError(f"split {role_or_name!r} not found; the cache has {sorted(available)}")


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(TrainConfig)}


def _coerce(key: str, value: Any, type_name: str) -> Any:
    """Convert a TOML value or a `--set` string to the field's type; raise ConfigError naming the key."""
    optional = "None" in type_name
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
        return None
    base = type_name.replace("| None", "").strip()
    if base == "list[str]":
        return _coerce_extra(key, value)
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in (*TRUE_WORDS, "false", "0", "no", "off"):
                return value.strip().lower() in TRUE_WORDS
            raise ValueError
        if base == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip())
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str) and "/" in value:  # e.g. lr_gamma=1/3
                num, den = value.split("/", 1)
                out = float(num) / float(den)
            else:
                out = float(value)
            if not math.isfinite(out):
                raise ValueError
            return out
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"config key {key!r}: {value!r} is not a valid {base}") from None


def parse_extra(item: str) -> tuple[str, float]:
    """(cache name, weight) of one `extra` entry, "name" (weight 1) or "name:weight"; ValueError when malformed."""
    text = item.strip()
    name, _, weight = text.rpartition(":") if ":" in text else (text, "", "1")
    name = name.strip()
    if not name or "," in name:
        raise ValueError(f"{item!r} does not name a cache")
    try:
        w = float(weight)
    except ValueError:
        raise ValueError(f"{item!r}: weight {weight.strip()!r} is not a number") from None
    if not (math.isfinite(w) and w > 0):
        raise ValueError(f"{item!r}: weight must be a number > 0")
    return name, w


def _coerce_extra(key: str, value: Any) -> list[str]:
    """A TOML list of strings, or a `--set` string "a,b:0.5", as canonical entries ("name" or "name:weight"), so
    that spellings of one list ("b:0.50", "b:1") compare equal when a resume checks for a changed config."""
    items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"config key {key!r}: {value!r} is not a list of cache names")
    out: list[str] = []
    for item in items:
        try:
            name, w = parse_extra(item)
        except ValueError as exc:
            raise ConfigError(f"config key {key!r}: {exc}") from None
        if any(parse_extra(o)[0] == name for o in out):
            raise ConfigError(f"config key {key!r}: {name!r} is listed twice")
        out.append(name if w == 1 else f"{name}:{w!r}")
    return out


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range and choice checks; returns cfg unchanged or raises ConfigError with the first problem."""
    for key, (lo, hi) in RANGES.items():
        v = getattr(cfg, key)
        if v is None:
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi) or (key in STRICTLY_POSITIVE and v <= 0):
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            raise ConfigError(f"config key {key!r}: {v!r} is out of range [{lo_s}, {hi_s}]"
                              + (" (must be > 0)" if key in STRICTLY_POSITIVE else ""))
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise ConfigError(f"config key {key!r}: {getattr(cfg, key)!r} is not one of {', '.join(choices)}")
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"config key 'device': {dev!r} is not auto, cpu, cuda or cuda:N")
    if not cfg.text_model.strip():
        raise ConfigError("config key 'text_model' is empty")
    from audioret.trainer.encoders import encoder_kind

    try:
        kind = encoder_kind(cfg.audio_encoder)
    except ValueError as exc:
        raise ConfigError(f"config key {exc}") from None
    _coerce_extra("extra", cfg.extra)  # a config built in code gets the checks a TOML file gets
    if kind != "cnn10" and cfg.audio_width != 1:
        raise ConfigError(f"config key 'audio_width' applies to cnn10 only, got {cfg.audio_width:g} with "
                          f"audio_encoder={cfg.audio_encoder!r}")
    if kind == "passt":
        from audioret.trainer.encoders.passt import passt_config_problem

        problem = passt_config_problem(cfg)
        if problem:
            raise ConfigError(problem)
    return cfg


def check_audio_checkpoint(cfg: TrainConfig) -> None:
    """A fresh run's `audio_checkpoint` must exist and fit the encoder: checked before caches and the text model
    load, so a typo or a file for another model costs a second, not the minutes before the training loop loads it.
    The file is matched through the encoder's own `load_checkpoint` on a model built on the meta device (shapes
    only, no memory, nothing copied). Missing comes first (whatever the width): it is the first thing to fix. Not
    part of `validate`: a finished run's saved config stays loadable (eval, resume) after the file has moved."""
    if not cfg.audio_checkpoint:
        return
    if cfg.audio_encoder.strip().startswith("hf:"):
        raise ConfigError(f"config key 'audio_checkpoint' does not apply to audio_encoder={cfg.audio_encoder!r}: "
                          "its weights load by name (the model folder or hub name after hf:)")
    if not Path(cfg.audio_checkpoint).is_file():
        raise ConfigError(f"config key 'audio_checkpoint': {cfg.audio_checkpoint}: checkpoint not found")
    if cfg.audio_encoder == "cnn10" and cfg.audio_width != 1:
        raise ConfigError(f"config key 'audio_checkpoint' needs audio_width=1 (PANNs' CNN10 channel counts), "
                          f"got audio_width={cfg.audio_width:g}; drop one of the two")
    import torch

    from audioret.trainer.encoders import build_audio_encoder, encoder_kind, feature_spec
    from audioret.trainer.encoders.loading import ModelLoadError

    if encoder_kind(cfg.audio_encoder) == "hf":
        raise ConfigError(f"config key 'audio_checkpoint' applies to cnn10 and passt; audio_encoder="
                          f"{cfg.audio_encoder!r} loads its weights from the model name")
    with torch.device("meta"):
        encoder = build_audio_encoder(cfg, feature_spec(cfg.audio_encoder).n_mels)
    try:
        encoder.load_checkpoint(cfg.audio_checkpoint, apply=False)
    except ModelLoadError as exc:
        raise ConfigError(f"config key 'audio_checkpoint': {exc}") from None


def from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """TrainConfig from a mapping of known keys (unknown keys → ConfigError naming the source)."""
    types = _field_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"{source}: unknown config key(s) {', '.join(unknown)}; known: {', '.join(types)}")
    try:
        return validate(TrainConfig(**{k: _coerce(k, v, types[k]) for k, v in values.items()}))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def read_toml(path: str | Path, error: type[Exception] | None = None, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file raises `error` (default ConfigError) naming it."""
    error = error or ConfigError
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc})") from None


def load_config(toml_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults ← TOML file (flat table, or a [train] table) ← `key=value` overrides, validated."""
    values: dict[str, Any] = {}
    if toml_path is not None:
        path = Path(toml_path)
        data = read_toml(path)
        if set(data) == {"train"} and isinstance(data["train"], dict):
            data = data["train"]
        nested = [k for k, v in data.items() if isinstance(v, dict)]
        if nested:
            raise ConfigError(f"{path}: unexpected table(s) {', '.join(nested)}; use flat keys")
        values.update(data)
        from_dict(values, str(path))  # name the file in errors before overrides mask them
    over = parse_overrides(overrides)
    types = _field_types()
    unknown = sorted(set(over) - set(types))
    if unknown:
        raise ConfigError(f"--set: unknown config key(s) {', '.join(unknown)}; known: {', '.join(types)}")
    values.update(over)
    return from_dict(values, "--set")


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the whole config as TOML, atomically. Keys whose value is None (text_lr) are omitted = default."""
    text = tomli_w.dumps({k: v for k, v in cfg.to_dict().items() if v is not None})

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")
    return publish_file(path, write)


def diff(a: TrainConfig, b: TrainConfig, ignore: set[str] = frozenset()) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ (for refusing a resume with a changed config)."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if k not in ignore and da[k] != db[k]}
