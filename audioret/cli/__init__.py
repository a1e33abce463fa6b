"""The `audioret` command line: the groups and shared options live in `groups.py`, one module per command group.

`prep_cmd` (prep audio, prep captions), `cache_cmd`, `download_cmd`, `train_cmd` (with `launch` for --nproc),
`eval_cmd`, `retrieve_cmd` (retrieve, predict), `preview_cmd`, `search_cmd` (search, sweep), `report_cmd`. Handlers
are named `<group>_<command>_command` (`prep_audio_command`) or `<command>_command` for the top level
(`train_command`). Importing a command module registers its commands on the groups; `main` is the console-script
entry point.
"""
# Each module below attaches its commands to the groups when imported.
from audioret.cli import (  # noqa: F401,E402
    cache_cmd,
    download_cmd,
    eval_cmd,
    prep_cmd,
    preview_cmd,
    report_cmd,
    retrieve_cmd,
    search_cmd,
    train_cmd,
)
from audioret.cli.groups import main  # noqa: F401

__all__ = ["main"]
