"""The hyperparameter search space: the paper's Table 4 by default, or a TOML file (`--space space.toml`).

Why a module of its own: the driver, the report (the paper's best next to ours) and the CLI need the same dimension
list, and the journal stores the space so a resume with another space is refused instead of telling the optimiser
results it cannot interpret. The TOML format: docs/training.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from skopt.space import Categorical, Dimension, Integer, Real

from audioret.trainer.config import ConfigError, load_config, read_toml


class SpaceError(ValueError):
    """A malformed search-space file (a usage error: the CLI exits 2)."""


# Paper Table 4, with TrainConfig key names, in the paper's column order.
PAPER_SPACE: list[tuple[str, str, Any, Any]] = [
    ("p_eda", "real", 0.0, 1.0), ("p_syn", "real", 0.0, 0.3), ("p_swp", "real", 0.0, 0.3),
    ("p_del", "real", 0.0, 0.3), ("p_ins", "real", 0.0, 0.3), ("p_bt", "real", 0.0, 1.0),
    ("n_f", "integer", 0, 1), ("w_f", "integer", 1, 32), ("n_t", "integer", 0, 8), ("w_t", "integer", 1, 64),
    ("g_max", "integer", 0, 6), ("p_ms", "real", 0.0, 1.0), ("ms_alpha", "real", 0.0, 1.0),
]

# The paper's best trial (the paper: ".9936 .2962 .0085 .1944 ~0 .1812 | 1 4 7 58 | 3 | .1045 .8286").
PAPER_BEST: dict[str, float | int] = {
    "p_eda": 0.9936, "p_syn": 0.2962, "p_swp": 0.0085, "p_del": 0.1944, "p_ins": 0.0, "p_bt": 0.1812,
    "n_f": 1, "w_f": 4, "n_t": 7, "w_t": 58, "g_max": 3, "p_ms": 0.1045, "ms_alpha": 0.8286,
}


def _dimension(name: str, kind: str, low: Any = None, high: Any = None, prior: str = "uniform",
               values: list | None = None) -> Dimension:
    if kind == "real":
        return Real(float(low), float(high), prior=prior, name=name)
    if kind == "integer":
        return Integer(int(low), int(high), prior=prior, name=name)
    if kind == "categorical":
        if not values:
            raise SpaceError(f"{name}: a categorical dimension needs a non-empty 'values' list")
        return Categorical(list(values), name=name)
    raise SpaceError(f"{name}: unknown type {kind!r} (real, integer, categorical)")


def default_space() -> list[Dimension]:
    """The paper's 13-dimensional augmentation space (Table 4)."""
    return [_dimension(n, k, lo, hi) for n, k, lo, hi in PAPER_SPACE]


def _entry_to_dimension(name: str, entry: Any, source: str) -> Dimension:
    if isinstance(entry, list):
        if len(entry) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry):
            raise SpaceError(f"{source}: {name} = {entry!r}: expected [low, high] numbers or a table")
        kind = "integer" if all(isinstance(v, int) for v in entry) else "real"
        return _dimension(name, kind, entry[0], entry[1])
    if isinstance(entry, dict):
        unknown = set(entry) - {"type", "low", "high", "prior", "values"}
        if unknown:
            raise SpaceError(f"{source}: [{name}] has unknown field(s) {', '.join(sorted(unknown))}")
        kind = str(entry.get("type", "categorical" if "values" in entry else "real")).lower()
        if kind != "categorical" and ("low" not in entry or "high" not in entry):
            raise SpaceError(f"{source}: [{name}] needs low and high")
        return _dimension(name, kind, entry.get("low"), entry.get("high"), entry.get("prior", "uniform"),
                          entry.get("values"))
    raise SpaceError(f"{source}: {name} = {entry!r}: expected [low, high] or a table")


def load_space(path: str | Path | None) -> list[Dimension]:
    """The dimensions of a space file, or the paper's space for None. Errors name the file and the key."""
    if path is None:
        return default_space()
    path = Path(path)
    data = read_toml(path, SpaceError, "space file")
    if not data:
        raise SpaceError(f"{path}: no dimensions")
    try:
        return [_entry_to_dimension(name, entry, str(path)) for name, entry in data.items()]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SpaceError):
            raise
        raise SpaceError(f"{path}: {exc}") from None


def describe(space: list[Dimension]) -> list[dict[str, Any]]:
    """A JSON-able description, stored in the journal so a resume can check it is the same space."""
    out = []
    for d in space:
        if isinstance(d, Categorical):
            out.append({"name": d.name, "type": "categorical", "values": [to_plain(v) for v in d.categories]})
        else:
            out.append({"name": d.name, "type": "integer" if isinstance(d, Integer) else "real",
                        "low": to_plain(d.low), "high": to_plain(d.high), "prior": d.prior})
    return out


def to_plain(value: Any) -> Any:
    """numpy scalars (what skopt's ask returns) → plain Python numbers, so JSON/TOML can store them."""
    return value.item() if hasattr(value, "item") else value


def point_to_params(space: list[Dimension], point: list[Any]) -> dict[str, Any]:
    """An optimiser point → {config key: plain value}, ints for Integer dimensions and floats for Real."""
    params: dict[str, Any] = {}
    for d, v in zip(space, point, strict=False):
        v = to_plain(v)
        if isinstance(d, Integer):
            v = int(v)
        elif isinstance(d, Real):
            v = float(v)
        params[d.name] = v
    return params


def params_to_point(space: list[Dimension], params: dict[str, Any]) -> list[Any]:
    return [params[d.name] for d in space]


def check_against_config(space: list[Dimension], config: str | Path | None, overrides: tuple[str, ...] = ()) -> None:
    """Each dimension's low and high (or each category) must be a valid value of the training config, so a typo
    fails before the first trial (ConfigError naming the dimension)."""
    for d in space:
        for v in (d.categories if isinstance(d, Categorical) else (d.low, d.high)):
            try:
                load_config(config, [*overrides, f"{d.name}={v}"])
            except ConfigError as exc:
                raise ConfigError(f"search space dimension {d.name!r} = {v!r}: {exc}") from None
