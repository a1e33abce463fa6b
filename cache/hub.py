"""Where a pretrained model the user names comes from: a local folder or a Hugging Face hub name.

Why one module at the bottom layer: prep's `hf:` features, the text and `hf:` encoders, zero-shot CLAP and Marian
all pass what the user typed to `from_pretrained`. `check_source` refuses a path that is no folder ("folder not
found", not a repo-id error) and, unless HF_HUB_OFFLINE is set, goes offline when one connection to the hub fails,
so a hub name fails at once instead of after ~50 s of retries. Stdlib only. Details: docs/data.md.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

PROBE_SECONDS = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
# A hub repo id: "name" or "owner/name" (letters, digits, '-', '_', '.'); anything else can only be a path.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_state = {"offline_forced": False}


class PretrainedSourceError(ValueError):
    """A model source that can be neither a folder here nor a hub name; the message is `<source>: <problem>`."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


def _offline_set() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """One TCP connection to the hub endpoint (HF_ENDPOINT or huggingface.co) within `timeout` seconds; name
    resolution included (in a thread: getaddrinfo itself has no timeout)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (80 if endpoint.scheme == "http" else 443)
    if not host:
        return True  # not a URL we understand: let huggingface_hub decide
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    worker = threading.Thread(target=probe, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(answer and answer[0])


def go_offline() -> None:
    """Offline mode for this process from now on (before or after huggingface_hub is imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    _state["offline_forced"] = True


def check_source(source: str) -> None:
    """Call before `from_pretrained(source)`: refuse a path-like `source` that is no folder, and go offline when
    `source` is a hub name and the hub cannot be reached (see the module docstring)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise PretrainedSourceError(source, "not a folder (a model is a folder with config.json, or a hub name)")
    if source.startswith((".", "~")) or not _REPO_ID.fullmatch(source):
        raise PretrainedSourceError(source, "folder not found")
    if _offline_set() or any(os.environ.get(v) for v in PROXY_VARS):
        return
    if not hub_reachable():
        go_offline()


def unreachable_hint() -> str:
    """What to add to a failed load's message after `check_source` found no hub ("" when it did not)."""
    if not _state["offline_forced"]:
        return ""
    endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return (f"; {endpoint} cannot be reached from here, so only models already in the local Hugging Face cache "
            "load: download it where there is network, or pass the model's folder")


__all__ = ["PretrainedSourceError", "check_source", "go_offline", "hub_reachable", "unreachable_hint"]
