"""Calling LLMs for the data stages: an OpenAI-compatible HTTP client (standard library only), an
offline vLLM backend, a concurrent request runner and the chat prompt templates the stages fill in.

A backend is anything with ``chat(messages, n=, temperature=, top_p=, max_tokens=)`` returning a
list of texts (``ChatBackend``); ``ChatClient`` returns a richer ``ChatResult`` with token usage.
An assistant message at the end of ``messages`` is a prefill: the model continues it, and the texts
returned start with it, so callers always see the whole answer.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Protocol

from tqdm import tqdm

Messages = list[dict[str, str]]


class ChatBackend(Protocol):
    def chat(self, messages: Messages, n: int, temperature: float, top_p: float,
             max_tokens: int) -> list[str]: ...


@dataclass(frozen=True)
class ClientConfig:
    base_url: str = "http://localhost:8000/v1"  # up to and including /v1
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key; the key is never logged
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024
    n: int = 1
    json_mode: bool = False  # send response_format {"type": "json_object"}
    timeout_s: float = 600.0  # per socket operation (connect, each read)
    max_retries: int = 6  # retries after the first attempt, on 429, 408, 5xx, timeouts, dropped connections
    backoff_s: float = 1.0  # first retry waits about this long, doubling each time, with jitter
    backoff_max_s: float = 60.0  # cap on one wait, Retry-After included
    concurrency: int = 16  # most requests in flight at once from this client, across threads
    price_prompt_per_1k: float = 0.0  # currency units per 1K prompt tokens, for the cost summary
    price_completion_per_1k: float = 0.0
    continue_final_message: bool = True  # with a prefill, send vLLM's continue_final_message fields
    extra_body: dict = field(default_factory=dict)  # merged into every request body last


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class ChatResult:
    texts: list[str]  # one per sample, prefill included
    finish_reasons: list[str | None]
    usage: Usage = Usage()


class LLMError(RuntimeError):
    """A request that failed for good (after any retries)."""

    fatal = False  # True when every other request would fail the same way: stop the stage


class LLMHTTPError(LLMError):
    def __init__(self, status: int, body: str, url: str):
        self.status, self.body = status, body
        self.fatal = status in (401, 403, 404)  # bad key, no access, wrong URL or model
        super().__init__(f"POST {url} -> HTTP {status}: {body[:500]!r}")


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the HTTP-date form
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def prefill_of(messages: Messages) -> str | None:
    return messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else None


@dataclass
class ClientStats:
    calls: int = 0  # chat() calls that returned
    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    failures: int = 0  # chat() calls that raised
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatClient:
    """OpenAI-compatible chat completions over HTTP; thread-safe, retries transient failures."""

    def __init__(self, config: ClientConfig):
        self.config = config
        self._api_key = os.environ.get(config.api_key_env, "")
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._lock = threading.Lock()
        self.stats = ClientStats()

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"ChatClient(base_url={self.config.base_url!r}, model={self.config.model!r})"

    @property
    def model_name(self) -> str:
        return self.config.model

    def cost(self, usage: Usage | ClientStats) -> float:
        c = self.config
        return (usage.prompt_tokens * c.price_prompt_per_1k
                + usage.completion_tokens * c.price_completion_per_1k) / 1000.0

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def chat(self, messages: Messages, **overrides: Any) -> ChatResult:
        """One chat completion; ``overrides`` replace config fields for this call (n, temperature...)."""
        unknown = set(overrides) - {f.name for f in fields(ClientConfig)}
        if unknown:
            raise TypeError(f"chat() got unknown option(s) {sorted(unknown)}; use ClientConfig field names")
        cfg = replace(self.config, **overrides) if overrides else self.config
        prefill = prefill_of(messages)
        body: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                                "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "n": cfg.n}
        if cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        if prefill is not None and cfg.continue_final_message:
            body.update(continue_final_message=True, add_generation_prompt=False)
        body.update(cfg.extra_body)
        try:
            payload = self._post_with_retries(cfg, json.dumps(body).encode("utf-8"))
            result = self._parse(payload, prefill or "")
        except LLMError:
            self._count(failures=1)
            raise
        self._count(calls=1, prompt_tokens=result.usage.prompt_tokens,
                    completion_tokens=result.usage.completion_tokens)
        return result

    def _post_with_retries(self, cfg: ClientConfig, data: bytes) -> dict:
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        for attempt in range(cfg.max_retries + 1):
            try:
                with self._slots:
                    self._count(requests=1)
                    return self._post_once(url, data, cfg.timeout_s)
            except _Transient as e:
                if attempt == cfg.max_retries:
                    raise LLMError(f"POST {url} failed after {attempt + 1} attempts: {e}") from e
                self._count(retries=1)
                backoff = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
                time.sleep(min(cfg.backoff_max_s, max(backoff, e.retry_after or 0.0)))
        raise AssertionError("unreachable")

    def _post_once(self, url: str, data: bytes, timeout: float) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            try:
                body = e.read(4000).decode("utf-8", "replace")
            finally:
                e.close()
            if e.code in (408, 429) or e.code >= 500:
                raise _Transient(f"HTTP {e.code}: {body[:200]!r}",
                                 _parse_retry_after(e.headers.get("Retry-After"))) from e
            raise LLMHTTPError(e.code, body, url) from e
        except (http.client.HTTPException, OSError) as e:  # refused, reset, timed out (URLError too)
            raise _Transient(f"{type(e).__name__}: {e}") from e
        try:
            return json.loads(raw)
        except ValueError as e:  # a proxy's error page or a cut-off body: worth another try
            raise _Transient(f"response is not JSON: {raw[:200]!r}") from e

    @staticmethod
    def _parse(payload: dict, prefill: str) -> ChatResult:
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices:
            raise LLMError(f"response has no choices: {json.dumps(payload)[:500]}")
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        texts = [prefill + ((c.get("message") or {}).get("content") or "") for c in choices]
        usage = payload.get("usage") or {}
        return ChatResult(texts, [c.get("finish_reason") for c in choices],
                          Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)))


class VLLMOfflineBackend:
    """vLLM in this process (no server): batches whole chunks of conversations."""

    def __init__(self, model: str, **llm_kwargs: Any):
        try:
            import vllm
        except ImportError as e:
            raise ImportError("VLLMOfflineBackend needs vLLM: pip install 'acecoder-rl[vllm]'") from e
        self._vllm = vllm
        self.model_name = model
        self.llm = vllm.LLM(model=model, **llm_kwargs)

    def chat(self, messages: Messages, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
             max_tokens: int = 1024) -> list[str]:
        return self.chat_batch([messages], n, temperature, top_p, max_tokens)[0]

    def chat_batch(self, conversations: list[Messages], n: int = 1, temperature: float = 0.0,
                   top_p: float = 1.0, max_tokens: int = 1024) -> list[list[str]]:
        params = self._vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        prefills = [prefill_of(m) for m in conversations]
        # vLLM applies one template mode per call, so a chunk is either all prefilled or none.
        cont = prefills[0] is not None
        if any((p is not None) != cont for p in prefills):
            raise ValueError("mix of prefilled and plain conversations in one batch")
        outs = self.llm.chat(conversations, params, use_tqdm=False,
                             add_generation_prompt=not cont, continue_final_message=cont)
        return [[(p or "") + o.text for o in out.outputs] for p, out in zip(prefills, outs)]


# ---- running many requests ------------------------------------------------------------------

class Done(NamedTuple):
    item: Any
    result: Any
    error: BaseException | None


def map_chat(items: Iterable[Any], fn: Callable[[Any], Any], concurrency: int = 8,
             desc: str | None = None, progress: bool = True) -> Iterator[Done]:
    """Run ``fn(item)`` on threads, at most ``concurrency`` at once; yield ``Done`` as each finishes.

    Items are drawn lazily, so a huge input does not turn into a huge queue of futures. An
    exception from ``fn`` is yielded in ``Done.error``, not raised.
    """
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    it = iter(items)
    bar = tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    pending: dict = {}
    try:
        while True:
            for item in it:
                pending[pool.submit(fn, item)] = item
                if len(pending) >= concurrency:
                    break
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                item = pending.pop(fut)
                bar.update(1)
                err = fut.exception()
                yield Done(item, None if err else fut.result(), err)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def as_chat_result(out: ChatResult | list[str]) -> ChatResult:
    if isinstance(out, ChatResult):
        return out
    return ChatResult(list(out), [None] * len(out))


def run_chats(backend: Any, items: list, to_messages: Callable[[Any], Messages], *, n: int,
              temperature: float, top_p: float, max_tokens: int, concurrency: int = 16,
              batch_size: int = 256, desc: str | None = None, progress: bool = True) -> Iterator[Done]:
    """Ask ``backend`` about every item; yield ``Done(item, ChatResult, error)`` as answers arrive.

    A backend with ``chat_batch`` (an offline engine) gets chunks of ``batch_size``; any other gets
    one ``chat`` call per item on ``concurrency`` threads.
    """
    sampling = dict(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
    if not hasattr(backend, "chat_batch"):
        yield from map_chat(items, lambda it: as_chat_result(backend.chat(to_messages(it), **sampling)),
                            concurrency, desc, progress)
        return
    with tqdm(total=len(items), desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            try:
                outs = backend.chat_batch([to_messages(it) for it in chunk], **sampling)
            except Exception as e:  # noqa: BLE001 - reported per item, the stage decides
                outs = [e] * len(chunk)
            for item, out in zip(chunk, outs):
                bar.update(1)
                yield Done(item, None, out) if isinstance(out, Exception) else Done(item, as_chat_result(out), None)


def add_client_args(parser: Any) -> None:
    """Command-line options for building a backend (``backend_from_args``)."""
    from common.options import add_deprecated, add_deprecated_spellings

    g = parser.add_argument_group("LLM backend")
    g.add_argument("--base_url", default=ClientConfig.base_url, help="OpenAI-compatible endpoint, up to /v1")
    g.add_argument("--model", required=True, help="model name sent to the server, or path for --offline")
    g.add_argument("--api_key_env", default=ClientConfig.api_key_env, help="environment variable with the key")
    g.add_argument("--request_timeout_s", type=float, default=ClientConfig.timeout_s,
                   help="seconds per socket operation")
    g.add_argument("--max_retries", type=int, default=ClientConfig.max_retries,
                   help="retries after the first attempt (429, 5xx, timeouts)")
    g.add_argument("--concurrency", type=int, default=ClientConfig.concurrency, help="requests in flight")
    g.add_argument("--price_prompt_per_1k", type=float, default=0.0,
                   help="price per 1K prompt tokens, for the cost line")
    g.add_argument("--price_completion_per_1k", type=float, default=0.0,
                   help="price per 1K completion tokens, for the cost line")
    g.add_argument("--no_continue_final_message", action="store_true",
                   help="for APIs that reject vLLM's prefill fields")
    g.add_argument("--offline", action="store_true", help="run vLLM in this process instead of over HTTP")
    add_deprecated_spellings(g, {"--base-url": "--base_url", "--api-key-env": "--api_key_env",
                                 "--timeout": "--request_timeout_s", "--max-retries": "--max_retries",
                                 "--price-prompt-per-1k": "--price_prompt_per_1k",
                                 "--price-completion-per-1k": "--price_completion_per_1k"})
    add_deprecated(g, "--no-continue-final-message", "--no_continue_final_message", const=True)


def backend_from_args(args: Any, json_mode: bool = False) -> Any:
    if args.offline:
        return VLLMOfflineBackend(args.model)
    return ChatClient(ClientConfig(
        base_url=args.base_url, model=args.model, api_key_env=args.api_key_env, timeout_s=args.request_timeout_s,
        max_retries=args.max_retries, concurrency=args.concurrency, json_mode=json_mode,
        price_prompt_per_1k=args.price_prompt_per_1k, price_completion_per_1k=args.price_completion_per_1k,
        continue_final_message=not args.no_continue_final_message))
