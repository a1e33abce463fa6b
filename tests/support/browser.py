"""A real headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`), no driver.

Why a pipe and not selenium or a websocket: Chromium speaks the DevTools protocol as NUL-terminated JSON on file
descriptors 3 (in) and 4 (out), which needs no port, no chromedriver version match, no pip package and nothing
downloaded (selenium-manager would try). The browser is Debian's `chromium` (`make test` installs it as root).

Also a script, for the README's screenshot of a report:
    python tests/support/browser.py demo/run/report/index.html docs/report.png --width 1000 --height 1500
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# Offline and quiet: without the networking flags Chromium contacts Google's hosts; as root it needs --no-sandbox.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--no-first-run", "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-pipe")

# What the page reports about itself once loaded: every image's decode state, every player's source and state.
PAGE_STATE = """(() => ({
  ready: document.readyState,
  images: [...document.images].map(i => ({src: i.src, complete: i.complete, naturalWidth: i.naturalWidth})),
  audio: [...document.querySelectorAll('audio')].map(a => ({src: a.currentSrc || a.src, readyState: a.readyState,
                                                           error: a.error ? a.error.code : null})),
}))()"""


def find_chromium() -> str | None:
    """The Chromium binary on PATH (AUDIORET_CHROMIUM names another), or None."""
    names = [os.environ["AUDIORET_CHROMIUM"]] if os.environ.get("AUDIORET_CHROMIUM") else CANDIDATES
    return next((p for p in map(shutil.which, names) if p), None)


def file_url_path(url: str) -> Path:
    """The local path of a file:// URL (percent-decoded)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        raise ValueError(f"not a file URL: {url}")
    return Path(urllib.request.url2pathname(parsed.path))


def _high_fd(fd: int) -> int:
    """Move a pipe end above 10, so dup2 onto 3/4 in the child never collides with the other ends."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless browser with one page; `with Chromium() as b: b.open(url); b.evaluate(...)`."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
        self.timeout = timeout
        self.events: list[dict] = []
        self._buf = b""
        self._next_id = 0

    def __enter__(self) -> "Chromium":
        self._profile = tempfile.mkdtemp(prefix="audioret-chromium-")
        to_child_r, self._to_child = map(_high_fd, os.pipe())
        self._from_child, from_child_w = map(_high_fd, os.pipe())

        def wire_fds() -> None:  # in the child: our pipe ends become its fds 3 (reads) and 4 (writes)
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                     preexec_fn=wire_fds, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            if select.select([self._from_child], [], [], left)[0]:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe (exit code {self.proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: bool = False,
             timeout: float | None = None) -> dict:
        """Send one DevTools command and return its result; events that arrive meanwhile go to `self.events`."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.events.append(self._read_message(deadline))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def open(self, url: str, width: int = 1100, height: int = 900) -> None:
        """Load `url` in a width×height viewport and wait for its load event."""
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=True)
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for_event("Page.loadEventFired")

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads (a missing image or recording) seen so far."""
        errors = []
        for e in self.events:
            p, method = e.get("params", {}), e.get("method")
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        return errors

    def screenshot(self, out: Path, max_height: int | None = None) -> Path:
        """PNG of the whole page (or its top `max_height` pixels) at the viewport's width."""
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        height = size["height"] if max_height is None else min(size["height"], max_height)
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": size["width"], "height": height, "scale": 1}}, session=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out


@dataclass
class PageCheck:
    """What a real browser saw of a page: errors, images, players, and where its screenshot went."""

    console_errors: list[str]
    images: list[dict] = field(default_factory=list)
    audio: list[dict] = field(default_factory=list)
    screenshot: Path | None = None


def check_page(page: Path, screenshot: Path, width: int = 1100, max_height: int | None = None,
               media_timeout: float = 15.0) -> PageCheck:
    """Open a page from disk, wait until every player has its metadata (or failed), and screenshot it."""
    with Chromium() as browser:
        browser.open(page.resolve().as_uri(), width=width)
        deadline = time.monotonic() + media_timeout
        state = browser.evaluate(PAGE_STATE)
        while any(a["readyState"] < 1 and a["error"] is None for a in state["audio"]) and time.monotonic() < deadline:
            time.sleep(0.2)
            state = browser.evaluate(PAGE_STATE)
        shot = browser.screenshot(screenshot, max_height)
        browser.call("Runtime.evaluate", {"expression": "0"}, session=True)  # collect late events
        return PageCheck(browser.console_errors(), state["images"], state["audio"], shot)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Open an HTML page from disk in headless Chromium and screenshot it.")
    ap.add_argument("page", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--height", type=int, default=None, help="Keep only the top HEIGHT pixels.")
    args = ap.parse_args()
    check = check_page(args.page, args.out, args.width, args.height)
    print(f"{args.out}: {len(check.images)} images, {len(check.audio)} players, "
          f"{len(check.console_errors)} console errors")
    for err in check.console_errors:
        print("  ", err)
