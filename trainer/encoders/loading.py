"""Loading what encoders start from: weights-only checkpoints (PANNs, PaSST) and transformers models by name.

Every file a user did not create is read with `torch.load(..., weights_only=True)`, numpy's plain array globals
allowed (PANNs' files hold them) and nothing else unpickled. Models loaded by name share `quiet_transformers` and
`model_load_error`: load reports are noise in a training log, and a failed load is one line naming the model.
"""
from __future__ import annotations

import contextlib
import pickle
import re
from pathlib import Path
from typing import Any, Iterator

import torch

from audioret.cache.hub import PretrainedSourceError, check_source, unreachable_hint


def _numpy_safe_globals() -> list:
    """numpy's array, scalar and dtype globals, each also under the name numpy 1.x pickles write.

    Why both spellings: numpy 2 moved `numpy.core` to `numpy._core`, and torch allow-lists a global by the
    module/qualname of the object it is given, i.e. the numpy-2 name only. PANNs' checkpoints were pickled in 2020
    with numpy 1.x and name `numpy.core.multiarray._reconstruct`: the same function, under its old address.
    """
    import numpy as np

    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    allowed: list = [np.ndarray, np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    allowed += [type(np.dtype(t)) for t in ("int64", "int32", "float64", "float32", "uint32", "bool", "U8")]
    return allowed


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_checkpoint_weights_only(path: Path) -> Any:
    """torch.load(weights_only=True), also for PANNs' files, which store numpy arrays (the sampler state) next to
    the weights: plain numpy arrays and dtypes are allowed as data, nothing else is unpickled. A file that needs
    any other global is refused with a ModelLoadError naming that global (torch's own message would advise
    `weights_only=False`, i.e. running whatever the file contains)."""
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _REFUSED_GLOBAL.search(str(exc))
        if refused is None:
            raise
        raise ModelLoadError(f"{path}: refused: the checkpoint needs the global {refused.group(1)}, which a "
                             "weights-only load does not allow (only tensors and numpy arrays are read; nothing "
                             "in the file was run)") from None


def read_state_dict(path: Path) -> dict[str, Any]:
    """A published checkpoint's state dict, weights only: {"model": state_dict} or a bare one, "module." prefixes
    (DataParallel) removed. A missing, unreadable or non-dict file raises ModelLoadError in one line naming it."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: checkpoint not found")
    try:
        state = load_checkpoint_weights_only(path)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line naming the file is the contract
        raise ModelLoadError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: not a state dict (got {type(state).__name__})")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def copy_matching(module: torch.nn.Module, state: dict[str, Any], expected: dict[str, str], source: str | Path,
                  apply: bool, nothing_fits: str) -> dict[str, Any]:
    """Copy the tensors of `state` (file key → tensor) that fit `module`; `expected` maps each file key the module
    can take to its own key. Returns the load report in file key names: {"source", "loaded", "missing" (expected
    keys absent from the file; BatchNorm counters ignored), "unexpected" (file keys not used), "mismatched"
    ((key, file shape, model shape) skipped)}. Nothing that fits raises ModelLoadError("<source>: <nothing_fits>").
    `apply=False` only matches (e.g. on a model built on the meta device, to refuse a wrong file early)."""
    own = module.state_dict()
    loaded, mismatched, unexpected, update = [], [], [], {}
    for key, value in state.items():
        target = expected.get(key)
        if target is None:
            unexpected.append(key)
        elif not torch.is_tensor(value) or value.shape != own[target].shape:
            mismatched.append((key, list(getattr(value, "shape", [])), list(own[target].shape)))
        else:
            update[target] = value
            loaded.append(key)
    if not loaded:
        raise ModelLoadError(f"{source}: {nothing_fits}")
    missing = [k for k, target in expected.items() if target not in update and not k.endswith("num_batches_tracked")]
    if apply:
        module.load_state_dict(update, strict=False)
    return {"source": str(source), "loaded": sorted(loaded), "missing": sorted(missing),
            "unexpected": sorted(unexpected), "mismatched": mismatched}


class ModelLoadError(RuntimeError):
    """A checkpoint or pretrained text model could not be loaded; the message is one line naming the source."""



@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers at error verbosity without progress bars, restored afterwards: `from_pretrained` lists every
    unused or re-initialised tensor (a dropped pooler, a CLAP checkpoint's other tower), which is expected here."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def model_load_error(what: str, source: str, exc: BaseException) -> ModelLoadError:
    """`<what> '<source>': cannot load (<first line of exc>)`: one line, naming the model (and, when the hub could
    not be reached, saying so: cache/hub.py)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(f"{what} {source!r}: cannot load ({first}){unreachable_hint()}")


def check_model_source(what: str, source: str, shown: str | None = None) -> None:
    """Before loading `source` by name: `<what> '<shown>': folder not found` for a path that is no folder, and
    offline mode when the hub cannot be reached (cache/hub.py `check_source`)."""
    try:
        check_source(source)
    except PretrainedSourceError as exc:
        raise ModelLoadError(f"{what} {shown or source!r}: {exc.problem}") from None
