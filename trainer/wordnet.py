"""Offline WordNet for EDA synonyms: Debian's files in an NLTK_DATA layout nltk 3.10 accepts.

Why: no `nltk.download()` at run time, and nltk 3.10 refuses corpus paths outside its data path and needs a
`lexnames` file Debian's `wordnet-base` does not ship. So the Debian files (or $AUDIORET_WORDNET_SOURCE) are copied
once into `<data dir>/corpora/wordnet/` beside a project-written `lexnames`; the data dir is $AUDIORET_NLTK_DATA or
~/.cache/audioret/nltk_data. A WordNet already installed for nltk is used as is.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

INSTALL_HINT = "apt-get install wordnet-base wordnet-sense-index"
DEFAULT_SOURCE = Path("/usr/share/wordnet")
NEEDED = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj",
          "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")

# The 45 standard WordNet 3.0 lexicographer files (number, name, syntactic category) — `lexnames` in Princeton's
# distribution; nltk reads it to name synsets' lexnames.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive "
    "noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity "
    "noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

_reader = None


class WordNetMissingError(RuntimeError):
    """WordNet files are not installed; the message says how to install them."""


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def data_dir() -> Path:
    return Path(os.environ.get("AUDIORET_NLTK_DATA") or Path.home() / ".cache" / "audioret" / "nltk_data")


def source_dir() -> Path:
    return Path(os.environ.get("AUDIORET_WORDNET_SOURCE") or DEFAULT_SOURCE)


def _complete(corpus: Path) -> bool:
    return all((corpus / n).is_file() for n in NEEDED) and (corpus / "lexnames").is_file()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def setup_wordnet(target: Path | None = None, source: Path | None = None) -> Path:
    """Make `<target>/corpora/wordnet` (copy + lexnames) once; return the NLTK data dir holding it."""
    target = Path(target or data_dir())
    source = Path(source or source_dir())
    corpus = target / "corpora" / "wordnet"
    if _complete(corpus):
        return target
    if not (source / "data.noun").is_file():
        raise WordNetMissingError(
            f"WordNet not found in {source} (needed for EDA synonyms, p_syn > 0); install it with "
            f"`{INSTALL_HINT}` or set p_syn=0")
    corpus.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temp dir and rename, so concurrent first runs never see a half-copied corpus.
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpus.parent))
    try:
        # mkdtemp makes the dir 0700: after the rename, another user (the image's uid 1000 reading the corpus root
        # built at image build time) could not list it. Give it the mode a mkdir would.
        tmp.chmod(0o777 & ~_umask())
        for f in source.iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        (tmp / "lexnames").write_text(lexnames_text(), encoding="ascii")
        if corpus.exists() and not _complete(corpus):
            shutil.rmtree(corpus, ignore_errors=True)  # an incomplete earlier copy (never a finished one)
        if not _complete(corpus):
            os.replace(tmp, corpus)  # ENOTEMPTY if another process won the race: caught below
    except OSError:
        if not _complete(corpus):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_wordnet():
    """The process-wide nltk WordNetCorpusReader (set up on first use). Raises WordNetMissingError."""
    global _reader
    if _reader is not None:
        return _reader
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        root = nltk.data.find("corpora/wordnet")  # an nltk-installed WordNet wins
    except LookupError:
        target = setup_wordnet()
        if str(target) not in nltk.data.path:
            nltk.data.path.insert(0, str(target))
        root = nltk.data.find("corpora/wordnet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available" (no OMW offline)
        _reader = WordNetCorpusReader(root, None)
    return _reader
