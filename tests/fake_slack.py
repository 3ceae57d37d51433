"""A Slack-like HTTP server on 127.0.0.1 for the notify tests: Web API, incoming webhook, file
uploads.

Every request is answered from a per-method script (then normally). Actions:

- ``"ok"``: process and answer;
- ``("reject", code)``: answer ``{"ok": false, "error": code}`` without processing;
- ``("delay", s)``: wait ``s`` seconds, then process and answer;
- ``"drop"`` / ``"drop-before"``: close the connection without an answer, after / without
  processing;
- ``("hang", s)`` / ``("hang-before", s)``: process / do not, then keep the connection silent ``s``
  seconds;
- ``("429", retry_after)``: rate-limited, not processed;
- ``("http", status)``: an HTML error page with that status, not processed;
- ``"garbage"``: process, then answer bytes that are not HTTP.

Methods: ``chat.postMessage``, ``conversations.history`` (newest first, ``oldest``, ``limit``,
``cursor``, metadata only with ``include_all_metadata``), ``files.getUploadURLExternal``, the upload
itself (script key ``upload``), ``files.completeUploadExternal`` (a message with the files in the
channel), and the webhook (script key ``webhook``).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = "xoxb-000000-test-s3cr3tT0k3n"
WEBHOOK_PATH = "/services/T000/B000/s3cr3tW3bh00k"
AL, EARLY = "C0AL000001", "C0EARLY001"


class FakeSlackAPI:
    def __init__(self, channels=(AL, EARLY), script: dict | None = None):
        self.channels: dict[str, list[dict]] = {c: [] for c in channels}
        self.webhook: list[dict] = []
        self.uploads: dict[str, bytes] = {}
        self.pending_files: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.script: dict[str, list] = {k: list(v) for k, v in (script or {}).items()}
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._last_ts = 0.0
        self._file_no = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer._handle(self)

            def do_GET(self):
                outer._handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- what arrived ------------------------------------------------------------------------------
    def messages(self, channel: str) -> list[dict]:
        with self.lock:
            return list(self.channels[channel])

    def keys(self, channel: str) -> list[str]:
        """Idempotency keys of the channel's messages (metadata), oldest first."""
        return [
            (m.get("metadata") or {}).get("event_payload", {}).get("key")
            for m in self.messages(channel)
        ]

    def calls_of(self, method: str) -> list[dict]:
        with self.lock:
            return [p for m, p in self.calls if m == method]

    # -- the server
    # ----------------------------------------------------------------------------------
    def _next_ts(self) -> str:
        ts = max(time.time(), self._last_ts + 1e-6)
        self._last_ts = ts
        return f"{ts:.6f}"

    def _params(self, handler, body: bytes) -> dict:
        params = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        ctype = handler.headers.get("Content-Type", "")
        if body and "json" in ctype:
            params.update(json.loads(body))
        elif body and "form-urlencoded" in ctype:
            params.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8")).items()})
        return params

    def _handle(self, handler) -> None:
        path = urlsplit(handler.path).path
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0) or 0))
        if path == WEBHOOK_PATH:
            method = "webhook"
        elif path.startswith("/upload/"):
            method = "upload"
        elif path.startswith("/api/"):
            method = path[len("/api/") :]
        else:
            self._reply(handler, 404, b"no_service", "text/plain")
            return
        params = {} if method == "upload" else self._params(handler, body)
        with self.lock:
            self.calls.append((method, params))
            queue = self.script.get(method) or []
            action = queue.pop(0) if queue else "ok"
        name, arg = (action, None) if isinstance(action, str) else action
        if name == "reject":
            self._reply(handler, 200, json.dumps({"ok": False, "error": arg}).encode())
            return
        if name == "429":
            self._reply(
                handler,
                429,
                b'{"ok": false, "error": "ratelimited"}',
                headers={"Retry-After": str(arg)},
            )
            return
        if name == "http":
            self._reply(handler, arg, b"<html><body>Bad gateway</body></html>", "text/html")
            return
        if name in ("drop-before", "hang-before"):
            if name == "hang-before":
                self.release.wait(arg)
            handler.close_connection = True
            return
        if name == "delay":
            time.sleep(arg)
        if (
            method != "upload"
            and method != "webhook"
            and handler.headers.get("Authorization") != f"Bearer {TOKEN}"
        ):
            self._reply(handler, 200, b'{"ok": false, "error": "invalid_auth"}')
            return
        status, payload, ctype = self._process(method, path, params, body)
        if name == "drop":
            handler.close_connection = True
            return
        if name == "hang":
            self.release.wait(arg)
            handler.close_connection = True
            return
        if name == "garbage":
            handler.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            handler.close_connection = True
            return
        self._reply(handler, status, payload, ctype)

    def _reply(
        self,
        handler,
        status: int,
        payload: bytes,
        ctype: str = "application/json; charset=utf-8",
        headers=None,
    ):
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _process(self, method: str, path: str, params: dict, body: bytes) -> tuple[int, bytes, str]:
        js = "application/json; charset=utf-8"

        def ok(**data):
            return 200, json.dumps({"ok": True, **data}).encode(), js

        def err(code):
            return 200, json.dumps({"ok": False, "error": code}).encode(), js

        with self.lock:
            if method == "webhook":
                self.webhook.append(json.loads(body))
                return 200, b"ok", "text/html"
            if method == "upload":
                fid = path.rsplit("/", 1)[-1]
                if fid not in self.pending_files:
                    return 404, b"unknown upload", "text/plain"
                self.uploads[fid] = body
                return 200, f"OK - {len(body)}".encode(), "text/plain"
            if method == "chat.postMessage":
                channel = params.get("channel")
                if channel not in self.channels:
                    return err("channel_not_found")
                message = {
                    "type": "message",
                    "ts": self._next_ts(),
                    "text": params.get("text", ""),
                    "bot_id": "B0EARLYIA",
                    "blocks": params.get("blocks") or [],
                    "metadata": params.get("metadata"),
                }
                self.channels[channel].append(message)
                return ok(channel=channel, ts=message["ts"], message=message)
            if method == "conversations.history":
                channel = params.get("channel")
                if channel not in self.channels:
                    return err("channel_not_found")
                oldest = float(params.get("oldest") or 0)
                limit = int(params.get("limit") or 100)
                start = int(params.get("cursor") or 0)
                keep_meta = str(params.get("include_all_metadata")).lower() in ("1", "true")
                newest_first = [
                    m for m in reversed(self.channels[channel]) if float(m["ts"]) > oldest
                ]
                page = newest_first[start : start + limit]
                if not keep_meta:
                    page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
                more = start + limit < len(newest_first)
                return ok(
                    messages=page,
                    has_more=more,
                    response_metadata={"next_cursor": str(start + limit) if more else ""},
                )
            if method == "files.getUploadURLExternal":
                if not params.get("filename") or not str(params.get("length", "")).isdigit():
                    return err("invalid_arguments")
                self._file_no += 1
                fid = f"F{self._file_no:09d}"
                self.pending_files[fid] = {
                    "name": params["filename"],
                    "length": int(params["length"]),
                }
                return ok(upload_url=f"http://127.0.0.1:{self.port}/upload/{fid}", file_id=fid)
            if method == "files.completeUploadExternal":
                files = json.loads(params.get("files") or "[]")
                channel = params.get("channel_id")
                if channel not in self.channels:
                    return err("channel_not_found")
                if not files or any(f["id"] not in self.uploads for f in files):
                    return err("file_not_found")
                shared = [
                    {
                        "id": f["id"],
                        "title": f.get("title"),
                        "name": self.pending_files[f["id"]]["name"],
                        "size": len(self.uploads[f["id"]]),
                    }
                    for f in files
                ]
                self.channels[channel].append(
                    {
                        "type": "message",
                        "ts": self._next_ts(),
                        "text": params.get("initial_comment", ""),
                        "files": shared,
                        "user": "U0EARLYIA",
                    }
                )
                return ok(files=shared)
            return err("unknown_method")
