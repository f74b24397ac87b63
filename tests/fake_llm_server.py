"""A local HTTP server speaking the OpenAI, Anthropic and Gemini wire formats, for tests.

The real SDKs send real HTTP to it. Each test scripts it (a queue of replies: status, text, raw
body, delay, headers) or gives a `responder(prompt) -> text`; every request is recorded (path,
lower-cased headers, JSON body, prompt text) so tests can assert on what the SDKs sent.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    status: int = 200
    text: str | None = None  # the model's answer, wrapped in the request's wire format
    raw: bytes | None = None  # sent as-is instead (malformed responses)
    delay: float = 0.0  # seconds before answering (timeouts)
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted error"  # error message for status != 200


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    prompt: str
    wire: str


def _wire(path: str) -> str:
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/completions"):
        return "openai-completion"  # the few-shot list prompt (llm_prompt: completion)
    if path.endswith("/messages"):
        return "anthropic"
    if ":generateContent" in path:
        return "gemini"
    return "unknown"


def _text_of(content: Any) -> str:
    """A message's text whether it is a string or a list of parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return ""


def _prompt(wire: str, body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    if wire == "openai-completion":
        return str(body.get("prompt", ""))
    if wire in ("openai", "anthropic"):
        return "\n".join(_text_of(m.get("content")) for m in body.get("messages", []))
    if wire == "gemini":
        return "\n".join(_text_of(c.get("parts")) for c in body.get("contents", []))
    return ""


def _success(wire: str, text: str, model: str) -> dict[str, Any]:
    if wire == "openai-completion":
        return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    if wire == "openai":
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    if wire == "anthropic":
        return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
            "modelVersion": model}


_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _error(wire: str, status: int, message: str) -> dict[str, Any]:
    if wire == "anthropic":
        kind = {429: "rate_limit_error", 401: "authentication_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if wire == "gemini":
        return {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}
    return {"error": {"message": message, "type": "fake_error", "param": None, "code": None}}


class FakeLLMServer:
    """127.0.0.1 on an ephemeral port, in a daemon thread. Use as a context manager."""

    def __init__(self, responder: Callable[[str], str] | None = None, default: Reply | None = None):
        self.responder = responder or (lambda prompt: '["A fake sentence."]')
        self.default = default  # reply when the queue is empty; None: 200 from the responder
        self.queue: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def push(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    def __enter__(self) -> "FakeLLMServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, prompt: str) -> Reply:
        with self._lock:
            if self.queue:
                return self.queue.popleft()
        if self.default is not None:
            return self.default
        return Reply(text=self.responder(prompt))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
                wire = _wire(self.path.split("?")[0])
                prompt = _prompt(wire, body)
                with server._lock:
                    server.requests.append(Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                                   body, prompt, wire))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server._next(prompt)
                    if reply.delay:
                        time.sleep(reply.delay)
                    model = body.get("model", "") if isinstance(body, dict) else ""
                    if reply.raw is not None:
                        data = reply.raw
                    elif reply.status == 200:
                        data = json.dumps(_success(wire, reply.text or "", model)).encode()
                    else:
                        data = json.dumps(_error(wire, reply.status, reply.message)).encode()
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on, so connections are refused at once (an unreachable server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
