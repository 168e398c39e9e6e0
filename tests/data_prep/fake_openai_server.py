"""A real HTTP server speaking the OpenAI chat-completions protocol, with scripted replies.

Tests set ``server.responder(body, attempt) -> Reply``; ``attempt`` counts earlier requests for the
same conversation (its last message), so "fail once, then answer" is easy to script. The server
records every request body and header set, and the most requests it ever had in flight at once.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    texts: list[str] = field(default_factory=lambda: ["ok"])  # one choice per text
    status: int = 200
    body: str | None = None  # sent as-is instead of a completion (error pages, garbage)
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (to outlast a client timeout, or to overlap)
    finish_reason: str = "stop"
    usage: dict | None = None  # default: 100 prompt tokens, 20 completion tokens per text


def conversation_key(body: dict) -> str:
    return json.dumps(body.get("messages", [])[-2:], sort_keys=True)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}), {})
            return
        body = json.loads(raw)
        with fake.lock:
            fake.requests.append(body)
            fake.headers.append(dict(self.headers))
            key = conversation_key(body)
            attempt = fake.attempts[key]
            fake.attempts[key] += 1
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        counted = [True]

        def done() -> None:
            with fake.lock:
                if counted[0]:
                    fake.in_flight -= 1
                    counted[0] = False

        try:
            reply = fake.responder(body, attempt)
            time.sleep(reply.delay_s)
            if reply.body is not None:
                text = reply.body
            else:
                usage = reply.usage or {"prompt_tokens": 100, "completion_tokens": 20 * len(reply.texts)}
                text = json.dumps({
                    "id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion",
                    "model": body.get("model"), "usage": usage,
                    "choices": [{"index": i, "message": {"role": "assistant", "content": t},
                                 "finish_reason": reply.finish_reason} for i, t in enumerate(reply.texts)]})
            # The request stops counting as in flight before its reply goes out: a client that got
            # the reply may send its next request before this thread runs again, and counting both
            # overstated the client's concurrency under load (CI saw 3 for a limit of 2).
            done()
            self._send(reply.status, text, reply.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) before we answered
        finally:
            done()

    def _send(self, status: int, text: str, headers: dict) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping past a client timeout must not hold up teardown
    fake: "FakeOpenAIServer"


class FakeOpenAIServer:
    def __init__(self, responder: Callable[[dict, int], Reply] | None = None):
        self.responder = responder or (lambda body, attempt: Reply())
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.attempts: Counter = Counter()
        self.in_flight = self.max_in_flight = 0
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.headers.clear()
            self.max_in_flight = 0

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
