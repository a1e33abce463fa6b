"""audioret: language-based audio retrieval from cached features.

The one import root. `audioret.cache` (the shard format), `audioret.pipeline` (raw data -> shards) and
`audioret.trainer` (shards -> models) live in the repository's top-level folders of those names; setup.cfg's
`package_dir` installs them under this package, and `audioret.cli` is the command line on top of them.
See docs/architecture.md.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"

# Run from a source checkout without installing (`PYTHONPATH=. python -m audioret`, a GPU machine's fixed
# image): the three folders sit beside this package, so look for submodules there too. An installed copy has
# them inside this package and no setup.cfg beside it, so this does nothing there.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "trainer").exists() and (_checkout / "setup.cfg").is_file() \
        and (_checkout / "trainer" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (a package's own __path__)
del _Path, _checkout
