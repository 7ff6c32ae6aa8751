"""Keys, page tokens, rate limits and size limits: the Guard in front of /api, /v1 and /mcp."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time

from .errors import BodyTooLarge, app_path, error_response
from .observability import request_info

# Routes that stay open without a key and are never rate limited: monitoring must see a
# building or overloaded server, and the docs describe nothing secret.
OPEN_API_PATHS = {"/api/health", "/api/docs", "/api/openapi.json", "/api/docs/oauth2-redirect"}
EMBED_TOKEN_PATHS = {"/api/ask", "/api/ask/stream"}
EMBED_TOKEN_TTL = 12 * 3600


def is_guarded(path: str) -> bool:
    """The machine interfaces: the JSON API, the OpenAI-compatible endpoint, MCP."""
    return path.startswith(("/api/", "/v1/")) or path in ("/v1", "/mcp") or path.startswith("/mcp/")


def presented_key(headers) -> str:
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key


class EmbedTokens:
    """Short-lived HMAC tokens baked into /embed so the page can ask without an API key."""

    def __init__(self):
        self._secret = secrets.token_bytes(32)

    def issue(self) -> str:
        expiry = str(int(time.time()) + EMBED_TOKEN_TTL)
        sig = hmac.new(self._secret, expiry.encode(), hashlib.sha256).hexdigest()
        return f"{expiry}.{sig}"

    def valid(self, token: str) -> bool:
        expiry, _, sig = (token or "").partition(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return False
        good = hmac.new(self._secret, expiry.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(sig, good)


class RateLimiter:
    """Token bucket per client: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when allowed, else the seconds to wait."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget idle clients rather than grow forever
                self._buckets.clear()
            return (1 - tokens) / self.rate


class Guard:
    """ASGI middleware: size limits (413) everywhere; API keys (401) and rate limits (429) on
    /api, /v1 and /mcp. Errors take each interface's shape (server/errors.py)."""

    def __init__(self, app, settings, tokens: EmbedTokens, limiter: RateLimiter):
        self.app, self.settings, self.tokens, self.limiter = app, settings, tokens, limiter
        self.upload_limit = int(settings.max_upload_mb * 1024 * 1024) + 64 * 1024

    def limit_for(self, path: str) -> int:
        if path.startswith("/api/admin/") or not is_guarded(path):
            return self.upload_limit  # uploads (ours and Gradio's) and the page's own calls
        return int(self.settings.max_request_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        path = app_path(scope)
        limit = self.limit_for(path)
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            if int(length) <= self.upload_limit:
                await self._drain(receive)  # read it so the client sees the 413, not a reset
            return await error_response(path, 413, f"request too large (limit {limit} bytes)")(scope, receive, send)

        if is_guarded(path) and path not in OPEN_API_PATHS:
            key = presented_key(headers)
            valid_key = bool(key) and any(hmac.compare_digest(key, k) for k in self.settings.api_keys)
            if self.settings.api_keys and not valid_key and not self._embed_token_ok(path, headers):
                return await error_response(
                    path, 401, "missing or invalid API key (X-API-Key or Authorization: Bearer)",
                    headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            # A valid key has its own bucket; anything else counts against the client's address
            # (so made-up keys cannot buy fresh buckets).
            client = f"key:{key}" if valid_key else f"ip:{(scope.get('client') or ('?',))[0]}"
            wait = self.limiter.take(client)
            if wait:
                info = request_info()
                if info is not None:
                    info["rate_limited"] = True  # counted by the request observer (server/observability.py)
                return await error_response(path, 429, "too many requests, slow down",
                                            headers={"Retry-After": str(max(1, math.ceil(wait)))})(scope, receive, send)

        received = 0

        async def counted_receive():  # bodies sent without Content-Length (chunked)
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body"):
                        await self._drain(receive, self.upload_limit - received)
                    raise BodyTooLarge(f"request too large (limit {limit} bytes)")
            return message

        return await self.app(scope, counted_receive, send)

    @staticmethod
    async def _drain(receive, budget: int = 1 << 62) -> None:
        """Read and drop the rest of the body (up to `budget` bytes)."""
        while budget > 0:
            message = await receive()
            budget -= len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    def _embed_token_ok(self, path: str, headers) -> bool:
        return path in EMBED_TOKEN_PATHS and self.tokens.valid(headers.get("x-embed-token", ""))
