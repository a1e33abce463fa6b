"""Back-translation backends for real: deep-translator's Google client against a loopback server that answers
like the real endpoint (429s, 503s, a hang, a kill -9 mid-run), and a tiny MarianMT model built in the test."""
from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from audioret.pipeline.translate import TranslatorUnavailable, translate_all
from audioret.pipeline.translate.google import GoogleBackend
from audioret.pipeline.translate.marian import MarianBackend
from audioret.pipeline.translate.store import TranslationStore, store_path
from support import AUDIO, cli_cmd, cli_env, run_cli
from support.dataset_layouts import make_clotho
from support.translate_servers import SENTENCES, GoogleLikeServer, build_tiny_marian, fake_translate


def test_google_retries_429_503_and_a_hang_with_backoff() -> None:
    with GoogleLikeServer(hang_s=10.0) as srv:
        srv.script = ["429", "503", "hang", "429"]
        g = GoogleBackend(base_url=srv.url, timeout=0.5, rps=0, retries=5, backoff=0.05, seed=0)
        t0 = time.monotonic()
        out = g.translate_batch(["a dog barks", "rain falls"], "en", "de")
        elapsed = time.monotonic() - t0
    assert out == ["a dog barks <de>", "rain falls <de>"]
    assert g.n_requests == 6 and g.n_retries == 4
    assert srv.requests[("en", "de", "a dog barks")] == 5  # 4 refused/hung + 1 answered
    # The hang cost the 0.5 s timeout, not the server's 10 s. Timeout + backoffs are at most 1.25 s, so a 2 s bound
    # left a loaded machine under 0.75 s for six requests; 5 s is still half of what a missed timeout costs.
    assert 0.5 <= elapsed < 5.0, elapsed


def test_google_gives_up_in_one_line_and_rate_is_polite() -> None:
    with GoogleLikeServer() as srv:
        srv.script = ["429"] * 3
        g = GoogleBackend(base_url=srv.url, rps=0, retries=2, backoff=0.01)
        with pytest.raises(TranslatorUnavailable, match=r"429 \(rate limited\) after 2 retries") as exc:
            g.translate_batch(["a cat meows"], "en", "fr")
        assert "\n" not in str(exc.value) and srv.requests[("en", "fr", "a cat meows")] == 3
        polite = GoogleBackend(base_url=srv.url, rps=20)
        t0 = time.monotonic()
        polite.translate_batch([f"text {i}" for i in range(6)], "en", "fr")
        assert time.monotonic() - t0 >= 0.24  # 6 requests at ≤ 20/s


def test_google_unreachable_network_is_one_clear_line() -> None:
    g = GoogleBackend(base_url="http://127.0.0.1:9/m", rps=0, retries=5, backoff=0.01, timeout=1)
    with pytest.raises(TranslatorUnavailable, match="cannot reach http://127.0.0.1:9/m .*network unreachable"):
        g.translate_batch(["a dog barks"], "en", "de")


def test_google_killed_run_resumes_without_repeating_a_request(tmp_path: Path) -> None:
    """kill -9 while a request is in flight; the rerun asks only for what was never answered."""
    root = make_clotho(tmp_path / "clotho")
    cache = tmp_path / "cache"
    args = ["prep", "captions", "--dataset", "clotho", "--root", root, "--cache", cache, "--translator", "google",
            "--pivots", "de,fr", "--google-rps", "0", "--google-timeout", "5", "--no-progress"]
    with GoogleLikeServer() as srv:
        srv.block_after = 50
        proc = subprocess.Popen(cli_cmd(*args, "--google-url", srv.url), env=cli_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert srv.blocked.wait(60), proc.communicate(timeout=5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        first_answered = sum(srv.answered.values())
        assert first_answered == 50
        with TranslationStore.for_cache(cache) as store:
            assert store.count() == 50  # every answer was committed before the next request went out
        srv.block_after = None
        srv.release.set()
        done = subprocess.run(cli_cmd(*args, "--google-url", srv.url), env=cli_env(), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert max(srv.answered.values()) == 1, "an answered request was asked again"
        n_texts = len(srv.answered)
        assert n_texts == 40 * 2 * 2  # 40 unique captions × 2 pivots × (forward + backward)
        rerun = subprocess.run(cli_cmd(*args, "--google-url", srv.url), env=cli_env(), capture_output=True,
                               text=True, timeout=120)
        assert rerun.returncode == 0 and "nothing to do" in rerun.stderr
        assert sum(srv.requests.values()) == n_texts + 1  # + the one in flight at the kill


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_marian(tmp_path_factory.mktemp("marian") / "opus-mt-tiny")


def test_marian_batched_path_store_and_resume(tiny_marian: Path, tmp_path: Path) -> None:
    backend = MarianBackend(template=str(tiny_marian), device="cpu", batch_size=4, max_new_tokens=8)
    texts = SENTENCES[:9]
    batched = backend.translate_batch(texts, "en", "de")
    single = [backend.translate_batch([t], "en", "de")[0] for t in texts]
    assert all(isinstance(t, str) and t for t in batched)
    assert batched == single, "padding in a batch must not change a translation"
    with TranslationStore(tmp_path / "t.sqlite3") as store:
        part = translate_all(backend, store, texts[:5], "en", "de", "de", batch_size=4)
        assert part.n_requested == 5
    with TranslationStore(tmp_path / "t.sqlite3") as store:  # a new process would see the same file
        full = translate_all(backend, store, texts, "en", "de", "de", batch_size=4)
        assert full.n_requested == 4 and full.done == dict(zip(texts, batched, strict=False))
        again = translate_all(backend, store, texts, "en", "de", "de", batch_size=4)
        assert again.n_requested == 0 and store.count() == 9


def test_marian_missing_model_is_one_line(tmp_path: Path) -> None:
    backend = MarianBackend(template=str(tmp_path / "no-such-{src}-{tgt}"), device="cpu")
    with pytest.raises(TranslatorUnavailable, match="marian: .*no-such-en-de: folder not found") as exc:
        backend.translate_batch(["a dog"], "en", "de")
    assert "\n" not in str(exc.value)


def test_fake_endpoint_round_trip_is_not_identity() -> None:
    assert fake_translate(fake_translate("a dog", "en", "de"), "de", "en") == "a dog (de back)"


def test_google_retries_are_announced_and_a_silent_endpoint_stops_at_the_total_deadline() -> None:
    lines: list[str] = []
    with GoogleLikeServer() as srv:
        srv.block_after = 0  # never answers: every request hangs until the client gives up on it
        g = GoogleBackend(base_url=srv.url, timeout=0.4, rps=0, retries=6, backoff=0.2, seed=1, timeout_total=2.0,
                          report=lines.append)
        t0 = time.monotonic()
        with pytest.raises(TranslatorUnavailable) as exc:
            g.translate_batch(["a dog barks"], "en", "de")
        elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 3.5, elapsed  # stopped by the 2 s deadline, not by the 6 retries (~6 s here)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"google: {srv.url} gave no answer within --timeout-total 2 s (")
    assert "last: timed out after 0.4 s" in msg and msg.endswith("rerun later to resume (finished translations "
                                                                 "are stored)")
    assert 1 <= len(lines) < 6 and len(lines) == g.n_retries == g.n_requests - 1
    for i, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"google en->de: retry {i}/6 in \d+\.\d s: timed out after 0\.4 s", line), line


def test_prep_captions_against_a_silent_endpoint_shows_retries_stops_and_keeps_its_work(tmp_path: Path) -> None:
    root = make_clotho(tmp_path / "clotho")
    cache = tmp_path / "cache"
    with GoogleLikeServer() as srv:
        srv.block_after = 7  # seven answers, then silence
        t0 = time.monotonic()
        proc = subprocess.run(cli_cmd("prep", "captions", "--dataset", "clotho", "--root", root, "--cache", cache,
                                      "--translator", "google", "--pivots", "de", "--google-url", srv.url,
                                      "--google-rps", "0", "--google-timeout", "0.5", "--google-backoff", "0.2",
                                      "--timeout-total", "2", "--no-progress"),
                              env=cli_env(), capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert re.fullmatch(r"google en->de: retry 1/6 in \d+\.\d s: timed out after 0\.5 s", err[0]), err
    assert err[-1].startswith(f"error: google: {srv.url} gave no answer within --timeout-total 2 s (")
    assert elapsed < 30, elapsed  # a few seconds of start-up plus the 2 s deadline, never the 6-retry schedule
    with TranslationStore.for_cache(cache) as store:
        assert store.count() == 7  # everything answered before the silence is kept for the rerun


class _RecordingMarian(MarianBackend):
    """The real backend; it only notes the batches translate_all hands it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[str]] = []

    def translate_batch(self, texts, src, tgt):
        self.batches.append(list(texts))
        return super().translate_batch(texts, src, tgt)


def _padding(lengths_of_batches: list[list[int]]) -> int:
    return sum(max(b) * len(b) - sum(b) for b in lengths_of_batches)


def test_marian_batches_are_cut_from_token_length_sorted_texts(tiny_marian: Path, tmp_path: Path) -> None:
    backend = _RecordingMarian(template=str(tiny_marian), device="cpu", batch_size=4, max_new_tokens=8)
    texts = [" ".join(s.split()[:k]) for s in SENTENCES for k in (2, 4, 7, 30)]
    tok, _ = backend._load(str(tiny_marian))
    # minus the </s> it appends
    pieces = {t: len(ids) - 1 for t, ids in zip(texts, tok(texts)["input_ids"], strict=True)}
    assert backend.token_lengths(texts, "en", "de") == [pieces[t] for t in texts]
    with TranslationStore(tmp_path / "t.sqlite3") as store:
        res = translate_all(backend, store, texts, "en", "de", "de", batch_size=4)
    sent = [t for b in backend.batches for t in b]
    assert sorted(sent) == sorted(set(texts)) and len(res.done) == len(set(texts))
    assert [pieces[t] for t in sent] == sorted(pieces[t] for t in sent)  # one length-sorted sequence
    alphabetical = sorted(set(texts))
    before = _padding([[pieces[t] for t in alphabetical[i:i + 4]] for i in range(0, len(alphabetical), 4)])
    after = _padding([[pieces[t] for t in b] for b in backend.batches])
    assert after * 4 < before, (after, before)


def _long_manifest(root: Path, n: int) -> Path:
    """A manifest of `n` clips (hard links to one real recording) with distinct captions of 3 to 20 words."""
    words = [w for s in SENTENCES for w in s.split()]
    audio = root / "audio"
    audio.mkdir(parents=True)
    source = AUDIO / "animals_cc0" / "dog.mp3"
    with open(root / "clips.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["split", "file_name", "caption_1"])
        for i in range(n):
            os.link(source, audio / f"clip{i:04d}.mp3")
            caption = " ".join(words[(i * 7 + k) % len(words)] for k in range(3 + i % 18)) + f" take {i}"
            w.writerow(["development", f"audio/clip{i:04d}.mp3", caption])
    return root / "clips.csv"


def _store_rows(cache: Path) -> dict[tuple, tuple[str, float]]:
    """key → (target, commit time) of every stored translation ({} while the writer has not made the table)."""
    with contextlib.closing(sqlite3.connect(store_path(cache), timeout=30)) as db:
        try:
            return {tuple(r[:5]): (r[5], r[6]) for r in db.execute("SELECT * FROM translations")}
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise


def test_marian_killed_run_resumes_without_redoing_a_committed_batch(tmp_path: Path) -> None:
    """kill -9 mid-run; every committed translation survives byte for byte (same target, same commit time) and
    the rerun sends the translator exactly the texts that were not committed. Captions run past the model's
    8 positions: they are cut there, not failed."""
    model = build_tiny_marian(tmp_path / "opus-mt-short", positions=8)  # ≤ 7 decoding steps: fast
    manifest = _long_manifest(tmp_path / "data", 24)  # 96 translations; the kill comes after the first 8
    cache = tmp_path / "cache"
    args = ["prep", "captions", "--dataset", "manifest", "--manifest", manifest, "--cache", cache,
            "--translator", "marian", "--marian-model-template", model, "--pivots", "de,fr",
            "--device", "cpu", "--batch-size", "4"]
    proc = subprocess.Popen(cli_cmd(*args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if store_path(cache).is_file() and len(_store_rows(cache)) >= 8:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    committed = _store_rows(cache)
    assert len(committed) >= 8, proc.communicate(timeout=5)
    done = run_cli(*args, check=True)
    final = _store_rows(cache)
    assert len(committed) < len(final), "the kill came after the last batch: nothing left to resume"
    assert all(final[k] == v for k, v in committed.items()), "a committed translation was redone"
    sent = int(re.search(r"(\d+) texts sent to the translator", done.stderr).group(1))
    assert sent == len(final) - len(committed)
    assert "back-translate fr->en" in done.stderr and "captions/s" in done.stderr  # tqdm bar, per direction
    assert "failed" not in done.stderr
