"""The `audioret` command line: groups live in `groups.py`, each command in the module of its stage.

Importing a command module registers its commands on the groups; `main` is the console-script entry point.
"""
from audioret.cli.groups import main  # noqa: F401

# Each module below attaches its commands to the groups when imported.
from audioret.cli import (  # noqa: F401,E402
    prep_audio_cmd,
    cache_cmd,
    prep_captions_cmd,
    train_cmd,
    search_cmd,
    download_cmd,
    predict_cmd,
    report_cmd,
)

__all__ = ["main"]
