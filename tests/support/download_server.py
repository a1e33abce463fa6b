"""A loopback HTTP file server for the download tests (ThreadingHTTPServer on 127.0.0.1): it speaks HTTP Range,
logs every request (path + Range header), and can drop a connection half-way once or stall a file half-way so the
downloader subprocess can be killed mid-file. No test touches the internet."""
from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

# `audioret download` options for tests: quick retries, no progress bar, no free-space floor.
FAST = ["--retries", "3", "--backoff", "0.05", "--no-progress", "--min-free", "0"]


def md5_hex(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class Server:
    """Loopback file server with Range support, a request log and fault injection."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.log: list[tuple[str, str | None]] = []
        self.drop_once: dict[str, int] = {}  # name -> close the connection after this many body bytes, once
        # name -> send this many body bytes, then stall until `release` is set (a kill lands mid-file for sure,
        # however slow or fast the machine: a throttled send could finish before a loaded test saw the .part)
        self.stall_after: dict[str, int] = {}
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.ignore_range = False
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                state.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def requests_for(self, name: str) -> list[str | None]:
        return [rng for path, rng in self.log if path == name]

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        name = unquote(urlparse(req.path).path).rsplit("/", 1)[-1]
        rng = req.headers.get("Range")
        self.log.append((name, rng))
        path = self.directory / name
        if not path.is_file():
            req.send_error(404)
            return
        data = path.read_bytes()
        start = int(rng.split("=")[1].split("-")[0]) if rng and not self.ignore_range else 0
        if start >= len(data) and start:
            req.send_response(416)
            req.send_header("Content-Range", f"bytes */{len(data)}")
            req.end_headers()
            return
        req.send_response(206 if start else 200)
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.send_header("Content-Length", str(len(data) - start))
        req.send_header("Accept-Ranges", "bytes")
        req.end_headers()
        body = data[start:]
        cut = self.drop_once.pop(name, None)
        try:
            if cut is not None:
                req.wfile.write(body[:cut])
                req.wfile.flush()
                req.connection.shutdown(socket.SHUT_RDWR)
                return
            stall = self.stall_after.get(name)
            if stall is not None:
                req.wfile.write(body[:stall])
                req.wfile.flush()
                self.stalled.set()
                self.release.wait(120)
                body = body[stall:]
            req.wfile.write(body)
            req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
