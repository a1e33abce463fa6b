"""The distribution installs one import name, `audioret`, and lives beside a package that owns `trainer`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support import REPO

SOURCE_FOLDERS = ("audioret", "cache", "pipeline", "trainer")


def build_wheel(source: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source (setuptools' build/ folder in the checkout may hold stale files)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return build_wheel(src, tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_only_audioret(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    outside = [n for n in names if n.split("/")[0] != "audioret" and ".dist-info/" not in n]
    assert outside == []
    # and nothing of the source tree is left out: every module of the four folders is in the wheel
    expected = {("audioret/" + str(p.relative_to(REPO))) if p.parts[len(REPO.parts)] != "audioret"
                else str(p.relative_to(REPO)) for folder in SOURCE_FOLDERS for p in (REPO / folder).rglob("*.py")}
    assert expected - set(names) == set()


def test_installs_beside_a_package_that_owns_trainer(wheel, tmp_path):
    other = tmp_path / "coqui_like"
    (other / "trainer").mkdir(parents=True)
    (other / "trainer" / "__init__.py").write_text("class Trainer:\n    owner = 'other'\n")
    (other / "pyproject.toml").write_text('[project]\nname = "trainer"\nversion = "0.0.36"\n'
                                          '[tool.setuptools]\npackages = ["trainer"]\n')
    other_wheel = build_wheel(other, tmp_path / "other_wheel")
    target = tmp_path / "site"
    for w in (other_wheel, wheel):  # ours second: it must not overwrite the other's files
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        str(w)], check=True, capture_output=True, text=True)
    code = ("from trainer import Trainer; assert Trainer.owner == 'other'; "
            "import audioret.trainer.loop, audioret.cli; print(audioret.trainer.loop.__file__)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          check=True)
    assert proc.stdout.strip().startswith(str(target / "audioret" / "trainer"))
