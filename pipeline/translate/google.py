"""Google back-translation through deep-translator's GoogleTranslator (the paper's route), made robust.

deep-translator 1.11.4 is unmaintained: `requests.get` without a timeout (one hung connection stalls a run
forever), no retries, no rate control, and the endpoint is a hard-coded module constant. `_TimedGoogleTranslator`
subclasses GoogleTranslator — keeping its language-code validation, URL parameters, HTML element queries and
exception types — and replaces only the HTTP exchange: a shared keep-alive `requests.Session` with a timeout, and
`self._base_url` set from our argument (a mirror, or a loopback server in tests). `GoogleBackend` adds a polite
request rate and retries with exponential backoff and full jitter on 429 / 5xx / timeouts.
"""
from __future__ import annotations

import random
import time
from typing import Sequence

import requests
from bs4 import BeautifulSoup
from deep_translator import GoogleTranslator
from deep_translator.constants import BASE_URLS
from deep_translator.exceptions import TooManyRequests, TranslationNotFound

from pipeline.translate import TranslationFailed, TranslatorUnavailable

DEFAULT_URL = BASE_URLS["GOOGLE_TRANSLATE"]


class _RetryableStatus(Exception):
    """HTTP 5xx: the service hiccupped; try again later."""


class _TimedGoogleTranslator(GoogleTranslator):
    """GoogleTranslator with a request timeout, a shared session and an overridable endpoint."""

    def __init__(self, source: str, target: str, base_url: str, timeout: float, session: requests.Session):
        super().__init__(source=source, target=target)
        self._base_url = base_url
        self._timeout = timeout
        self._session = session

    def translate(self, text: str, **kwargs: object) -> str:
        text = text.strip()
        if not text:
            return text
        params = dict(self._url_params, tl=self._target, sl=self._source)
        params[self.payload_key] = text
        response = self._session.get(self._base_url, params=params, timeout=self._timeout)
        with response:
            if response.status_code == 429:
                raise TooManyRequests()
            if response.status_code >= 500:
                raise _RetryableStatus(f"HTTP {response.status_code}")
            if not 200 <= response.status_code < 300:
                raise TranslationFailed(f"HTTP {response.status_code} from {self._base_url}")
            soup = BeautifulSoup(response.text, "html.parser")
        element = soup.find(self._element_tag, self._element_query) or soup.find(
            self._element_tag, self._alt_element_query)
        if element is None:
            raise TranslationNotFound(text)
        return element.get_text(strip=True)


class GoogleBackend:
    """One request per text (each committed as it arrives), at most `rps` requests per second.

    Retries: 429, 5xx and timeouts back off `backoff * 2**attempt` seconds (capped at `max_backoff`, full jitter)
    up to `retries` times; then the service counts as unavailable and the run stops (what is stored is kept).
    A connection that cannot be made at all (no network, DNS failure) is retried twice, then reported in one line.
    """

    name = "google"
    max_batch = 1

    def __init__(self, base_url: str | None = None, timeout: float = 10.0, rps: float = 5.0, retries: int = 6,
                 backoff: float = 2.0, max_backoff: float = 120.0, seed: int | None = None):
        self.base_url = base_url or DEFAULT_URL
        self.timeout = timeout
        self.min_interval = 1.0 / rps if rps > 0 else 0.0
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
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

    def _sleep_backoff(self, attempt: int) -> None:
        self.n_retries += 1
        time.sleep(self._rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt)))

    def translate_one(self, text: str, src: str, tgt: str) -> str:
        client = self._client(src, tgt)
        unreachable = 0
        for attempt in range(self.retries + 1):
            self._pace()
            self.n_requests += 1
            try:
                return client.translate(text)
            except (TooManyRequests, _RetryableStatus, requests.Timeout) as exc:
                last = "HTTP 429 (rate limited)" if isinstance(exc, TooManyRequests) else (
                    "timed out" if isinstance(exc, requests.Timeout) else str(exc))
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
            if attempt < self.retries:
                self._sleep_backoff(attempt)
        raise TranslatorUnavailable(
            f"google: {self.base_url} still {last} after {self.retries} retries; rerun later to resume "
            f"(finished translations are stored)")

    def translate_batch(self, texts: Sequence[str], src: str, tgt: str) -> list[str | TranslationFailed]:
        out: list[str | TranslationFailed] = []
        for text in texts:
            try:
                out.append(self.translate_one(text, src, tgt))
            except TranslationFailed as exc:
                out.append(exc)
        return out
