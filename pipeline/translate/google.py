"""Google back-translation through deep-translator's GoogleTranslator (the paper's route), made robust.

deep-translator 1.11.4 is unmaintained: no request timeout, no retries, no rate control, a hard-coded endpoint.
`_TimedGoogleTranslator` keeps its language validation, parameters and parsing and replaces only the HTTP exchange
(a keep-alive session with a timeout, a configurable endpoint); `GoogleBackend` adds a polite request rate and
retries with exponential backoff and full jitter on 429 / 5xx / timeouts.
"""
from __future__ import annotations

import random
import sys
import time
from typing import Callable, Sequence

import requests
from bs4 import BeautifulSoup
from deep_translator import GoogleTranslator
from deep_translator.constants import BASE_URLS
from deep_translator.exceptions import TooManyRequests, TranslationNotFound

from audioret.pipeline.fetch import RetryableStatus
from audioret.pipeline.translate import TranslationFailed, TranslatorUnavailable

DEFAULT_URL = BASE_URLS["GOOGLE_TRANSLATE"]


class _TimedGoogleTranslator(GoogleTranslator):
    """GoogleTranslator with a request timeout, a shared session and an overridable endpoint."""

    def __init__(self, source: str, target: str, base_url: str, timeout: float, session: requests.Session):
        super().__init__(source=source, target=target)
        self._base_url = base_url
        self._timeout = timeout
        self._session = session

    def translate(self, text: str, timeout: float | None = None, **kwargs: object) -> str:
        text = text.strip()
        if not text:
            return text
        params = dict(self._url_params, tl=self._target, sl=self._source)
        params[self.payload_key] = text
        response = self._session.get(self._base_url, params=params, timeout=timeout or self._timeout)
        with response:
            if response.status_code == 429:
                raise TooManyRequests()
            if response.status_code >= 500:
                raise RetryableStatus(f"HTTP {response.status_code}")
            if not 200 <= response.status_code < 300:
                raise TranslationFailed(f"HTTP {response.status_code} from {self._base_url}")
            soup = BeautifulSoup(response.text, "html.parser")
        element = soup.find(self._element_tag, self._element_query) or soup.find(
            self._element_tag, self._alt_element_query)
        if element is None:
            raise TranslationNotFound(text)
        return element.get_text(strip=True)


#: Default for `timeout_total` / `--timeout-total`: the longest one text may take, every attempt and backoff wait
#: included. The default schedule (10 s timeout, 6 retries, 2 s backoff doubling, full jitter) against a silent
#: endpoint costs 70 s of timeouts plus 63 s of waits on average and up to 196 s; 3 minutes without one answer
#: rides out Google's short 429 bursts and still stops a dead endpoint within a bounded, predictable time.
DEFAULT_TIMEOUT_TOTAL = 180.0


def _stderr_line(line: str) -> None:
    """One line on stderr above any tqdm bar (the back-translation bar is on stderr too)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


class GoogleBackend:
    """One request per text (each committed as it arrives), at most `rps` requests per second.

    Retries: 429, 5xx and timeouts back off `backoff * 2**attempt` seconds (capped at `max_backoff`, full jitter)
    up to `retries` times, each announced on stderr (`report`) as `retry 2/6 in 4.0 s: <reason>` so a slow or
    silent service is never mistaken for a hang; then the service counts as unavailable and the run stops (what
    is stored is kept). `timeout_total` bounds one text's attempts and waits together: when the next attempt
    could not start before it, the run stops the same way. A connection that cannot be made at all (no network,
    DNS failure) is retried twice, then reported in one line.
    """

    name = "google"
    max_batch = 1

    def __init__(self, base_url: str | None = None, timeout: float = 10.0, rps: float = 5.0, retries: int = 6,
                 backoff: float = 2.0, max_backoff: float = 120.0, seed: int | None = None,
                 timeout_total: float = DEFAULT_TIMEOUT_TOTAL, report: Callable[[str], None] | None = None):
        self.base_url = base_url or DEFAULT_URL
        self.timeout = timeout
        self.min_interval = 1.0 / rps if rps > 0 else 0.0
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout_total = timeout_total
        self._report = report or _stderr_line
        self._rng = random.Random(seed)
        self._session = requests.Session()
        self._clients: dict[tuple[str, str], _TimedGoogleTranslator] = {}
        self._last_request = 0.0
        self.n_requests = 0
        self.n_retries = 0

    def engine(self, src: str, tgt: str) -> str:
        # The endpoint is part of the key: a mirror or test server never pollutes real Google translations.
        return "deep-translator-google" if self.base_url == DEFAULT_URL else f"deep-translator-google@{self.base_url}"

    def _client(self, src: str, tgt: str) -> _TimedGoogleTranslator:
        if (src, tgt) not in self._clients:
            self._clients[(src, tgt)] = _TimedGoogleTranslator(src, tgt, self.base_url, self.timeout, self._session)
        return self._clients[(src, tgt)]

    def _pace(self) -> None:
        wait = self._last_request + self.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    def _gave_up(self, why: str) -> TranslatorUnavailable:
        return TranslatorUnavailable(f"google: {self.base_url} {why}; rerun later to resume (finished translations "
                                     "are stored)")

    def translate_one(self, text: str, src: str, tgt: str) -> str:
        client = self._client(src, tgt)
        deadline = time.monotonic() + self.timeout_total
        unreachable = 0
        for attempt in range(self.retries + 1):
            self._pace()
            self.n_requests += 1
            timeout = min(self.timeout, max(deadline - time.monotonic(), 0.01))
            try:
                return client.translate(text, timeout=timeout)
            except (TooManyRequests, RetryableStatus, requests.Timeout) as exc:
                last = "HTTP 429 (rate limited)" if isinstance(exc, TooManyRequests) else (
                    f"timed out after {timeout:.1f} s" if isinstance(exc, requests.Timeout) else str(exc))
            except requests.ConnectionError as exc:
                unreachable += 1
                if unreachable > 2:
                    raise TranslatorUnavailable(
                        f"google: cannot reach {self.base_url} (network unreachable: {type(exc).__name__}); "
                        f"use --translator marian for offline back-translation, or rerun later to resume"
                    ) from None
                last = "connection failed"
            except TranslationNotFound:
                raise TranslationFailed(f"google: no translation in the answer for {text!r}") from None
            if attempt == self.retries:
                break
            wait = self._rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))
            if time.monotonic() + wait >= deadline:
                raise self._gave_up(f"gave no answer within --timeout-total {self.timeout_total:g} s "
                                    f"({attempt + 1} attempt(s), last: {last})")
            self._report(f"google {src}->{tgt}: retry {attempt + 1}/{self.retries} in {wait:.1f} s: {last}")
            self.n_retries += 1
            time.sleep(wait)
        raise self._gave_up(f"still {last} after {self.retries} retries")

    def translate_batch(self, texts: Sequence[str], src: str, tgt: str) -> list[str | TranslationFailed]:
        out: list[str | TranslationFailed] = []
        for text in texts:
            try:
                out.append(self.translate_one(text, src, tgt))
            except TranslationFailed as exc:
                out.append(exc)
        return out
