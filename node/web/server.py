"""The web view's HTTP server: a static page (`node/web/static/`, no build step) and its JSON endpoints.

Off by default (`[web] enabled`, `[web] listen`); read-only: the one POST, `/api/whatif`, computes and
stores nothing. Routes:
- `GET /` the page; `GET /static/<file>` its script and style (only files of the static folder);
- `GET /api/overview`, `GET /api/epochs?limit=N`, `GET /api/accounts/at-risk?limit=N`,
  `GET /api/accounts/<0x account>?epoch=E`, `POST /api/whatif` (a what-if JSON document).
Errors are JSON `{"error": message, "violations": [{"field", "description"}]}` with a 4xx/5xx status.
Bounded: request bodies at most `MAX_BODY_BYTES`, `MAX_CONCURRENT_WHATIF` what-if computations at a
time (others get 429). Every answer carries a restrictive Content-Security-Policy. Nothing is persisted.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from node.web.views import WebError, WebViews

LOG = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
MAX_BODY_BYTES = 64 * 1024
MAX_CONCURRENT_WHATIF = 2
DEFAULT_TIMELINE = 30
DEFAULT_AT_RISK = 10
ACCOUNT_PATH = re.compile(r"^/api/accounts/(0x[0-9a-fA-F]{40})$")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


def _int_param(query: dict[str, list[str]], name: str, default: int | None) -> int | None:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise WebError(400, f"{name}: expected an integer, got {values[0][:40]!r}") from None


class WebServer:
    """The web view on `listen` (host:port; port 0 picks one) in daemon threads."""

    def __init__(self, listen: str, views: WebViews) -> None:
        host, _, port = listen.rpartition(":")
        self.views = views
        self.whatif_slots = threading.BoundedSemaphore(MAX_CONCURRENT_WHATIF)
        self.httpd = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), _make_handler(self))
        self.httpd.daemon_threads = True
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def route_get(self, path: str, query: dict[str, list[str]]) -> Any:
        if path == "/api/overview":
            return self.views.get_overview()
        if path == "/api/epochs":
            return self.views.get_timeline(_int_param(query, "limit", DEFAULT_TIMELINE) or 0)
        if path == "/api/accounts/at-risk":
            return self.views.get_at_risk(_int_param(query, "limit", DEFAULT_AT_RISK) or 0)
        match = ACCOUNT_PATH.match(path)
        if match:
            return self.views.get_account(match.group(1), _int_param(query, "epoch", None))
        if path.startswith("/api/accounts/"):
            raise WebError(400, "account: must be 0x followed by 40 hex digits")
        raise WebError(404, f"{path[:80]}: no such endpoint")

    def route_post(self, path: str, body: bytes) -> Any:
        if path != "/api/whatif":
            raise WebError(404, f"{path[:80]}: no such endpoint")
        if not self.whatif_slots.acquire(blocking=False):
            raise WebError(429, "what-if: too many computations at once, retry shortly")
        try:
            return self.views.simulate(body)
        finally:
            self.whatif_slots.release()


def get_static(path: str) -> tuple[bytes, str] | None:
    """(content, type) of `/` or `/static/<name>` (a file directly in the static folder), else None."""
    name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
    if path not in ("/", "/index.html") and (not path.startswith("/static/") or "/" in name or name.startswith(".")):
        return None
    file = STATIC_DIR / name
    if file.suffix not in CONTENT_TYPES or not file.is_file():
        return None
    return file.read_bytes(), CONTENT_TYPES[file.suffix]


def _make_handler(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if not url.path.startswith("/api/"):
                found = get_static(url.path)
                if found is None:
                    self._json(404, {"error": f"{url.path[:80]}: not found"})
                else:
                    self._send(200, *found)
                return
            self._answer(lambda: server.route_get(url.path, parse_qs(url.query)))

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self._json(413 if length > 0 else 400, {"error": f"body: Content-Length must be in 0..{MAX_BODY_BYTES}"})
                return
            body = self.rfile.read(length)
            self._answer(lambda: server.route_post(urlsplit(self.path).path, body))

        def _answer(self, build: Any) -> None:
            try:
                self._json(200, build())
            except WebError as exc:
                self._json(exc.status, {"error": str(exc), "violations": exc.violations})
            except Exception:
                LOG.exception("web request failed", extra={"path": self.path[:200]})
                self._json(500, {"error": "internal error"})

        def _json(self, code: int, doc: Any) -> None:
            self._send(code, json.dumps(doc, allow_nan=False).encode(), "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
