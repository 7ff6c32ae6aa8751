"""1,000 malformed requests against the real `python app.py`: every one gets a 4xx (or a
handled 200), never a 5xx or a traceback — the JSON API, the OpenAI-compatible endpoint, MCP,
the pages, /metrics, /livez and /readyz alike; a third carry an odd X-Request-ID (very long,
binary, controls, CRLF-like), and every response sends back a clean one (no header injection)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import httpx
import pytest

from browser.harness import shared_server

pytestmark = pytest.mark.slow
N = 1000
KEY = {"X-API-Key": "test-key"}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

WEIRD = ["", " ", "\x00", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "<script>x</script>",
         "' OR 1=1 --", "%s%s%n", "集" * 3000, "\u202e\u200b", "NaN", "null", "[]", "{}", "🧪" * 50, "a\nb\r\n\tc",
         "../../etc/passwd", "[1] [999] [0]"]
VALUES = [None, True, False, 0, -1, 10**30, 1.5, float("inf"), "", "x", [], {}, [None], {"a": 1}, ["user"],
          [{"role": "user"}], [{"content": "x"}], [{"role": "user", "content": 5}]]


# X-Request-ID values httpx can put on the wire (it refuses CR, LF, NUL and blank values itself; those are
# sent raw in tests/test_server_ops.py): long, binary (obs-text), controls, look-alikes of injection.
ODD_IDS = [b"x" * 129, b"y" * 8000, bytes(range(0x80, 0x100)), "集群".encode(), b"\x01\x02\x1f\x7f",
           b"a\tb", b"abc%0d%0aSet-Cookie:%20x=1", b"<script>", b"ok-id-1", b"id with spaces",
           "\u2028".encode()]
CLEAN_ID = re.compile(rb"[\x20-\x7e]{1,128}")


def rand_json_value(rng: random.Random, depth: int = 0):
    pick = rng.random()
    if depth > 3 or pick < 0.4:
        return rng.choice(VALUES + WEIRD)
    if pick < 0.7:
        return [rand_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["question", "history", "top_k", "model", "messages", "stream", "role", "content",
                        "jsonrpc", "method", "params", "id", "name", "arguments", "x"]): rand_json_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def mangle(rng: random.Random, body: dict) -> bytes:
    """A valid-looking body broken one way or another."""
    text = json.dumps(body, ensure_ascii=rng.random() < 0.5)
    how = rng.randrange(8)
    if how == 0:
        return text[: rng.randint(0, max(0, len(text) - 1))].encode()  # truncated
    if how == 1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))  # noise
    if how == 2:
        return text.encode("utf-16")  # wrong encoding
    if how == 3:
        return ("[" * 5000 + "]" * 5000).encode()  # deep nesting
    if how == 4:
        return b"\xff\xfe" + text.encode()[:50]
    if how == 5:
        return json.dumps(rand_json_value(rng)).encode()
    if how == 6:
        key = rng.choice(list(body) or ["x"])
        return json.dumps({**body, key: rand_json_value(rng)}).encode()  # one field of the wrong type
    return text.replace('"', "'").encode()  # not JSON


def requests(rng: random.Random):
    ask = {"question": "沙特计划建设多少个医疗集群？", "history": [{"role": "user", "content": "集群"}], "top_k": 3}
    chat = {"model": "clusterqa", "messages": [{"role": "user", "content": "集群"}], "stream": False}
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ask", "arguments": {"question": "集群"}}}
    targets = [
        ("POST", "/api/ask", ask, {"Content-Type": "application/json", **KEY}),
        ("POST", "/api/ask/stream", ask, {"Content-Type": "application/json", **KEY}),
        ("POST", "/v1/chat/completions", chat, {"Content-Type": "application/json", "Authorization": "Bearer test-key"}),
        ("POST", "/v1/chat/completions", {**chat, "stream": True},
         {"Content-Type": "application/json", "Authorization": "Bearer test-key"}),
        ("POST", "/mcp", rpc, {**MCP_ACCEPT, **KEY}),
        ("POST", "/mcp", {**rpc, "method": "tools/list", "params": {}}, {**MCP_ACCEPT, **KEY}),
    ]
    for i in range(N):
        kind = i % 10
        if kind < 8:  # broken bodies to the JSON endpoints
            method, path, body, headers = targets[i % len(targets)]
            headers = dict(headers)
            if rng.random() < 0.15:
                headers["Content-Type"] = rng.choice(["text/plain", "application/x-www-form-urlencoded",
                                                      "multipart/form-data; boundary=x", "application/json; charset=latin-1"])
            if rng.random() < 0.05:
                headers.pop("X-API-Key", None)
                headers["Authorization"] = rng.choice(["Bearer", "Bearer " + "x" * 500, "Basic Zm9vOmJhcg==", "bearer x y"])
            yield method, path, mangle(rng, body), headers
        elif kind == 8:  # odd methods and paths
            method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
            path = rng.choice(["/api/ask", "/v1/chat/completions", "/mcp", "/v1/models/" + rng.choice(["gpt-4", "%00", "x" * 300]),
                               "/api/documents/" + rng.choice(["..%2f..%2fetc", "%00", "a" * 300, "x/../../y"]),
                               "/v1", "/v1/", "/mcp/", "/api/", "/web/..%2fapp.py", "/web/%00"])
            yield method, path, b"", dict(KEY)
        elif i % 20 == 19:  # the operations endpoints, odd methods and query strings
            method = rng.choice(["GET", "GET", "GET", "POST", "HEAD", "DELETE"])
            path = rng.choice(["/metrics", "/livez", "/readyz"]) + rng.choice(["", "?key=", "?key=%00", "?x=" + "9" * 300,
                                                                         "/", "/..%2f", "?format=openmetrics"])
            yield method, path, b"", {rng.choice(["Authorization", "X-Other"]): rng.choice(["Bearer", "Bearer x" * 50, ""])}
        else:  # query strings on the pages
            params = {k: rng.choice(["-1", "x", "99999999999999999999", "", "0", "1e9", "%00"])
                      for k in rng.sample(["start", "end", "qs", "qe", "ss", "se", "script"], rng.randint(1, 4))}
            path = rng.choice(["/doc/seed/global-advanced-manufacturing-cluster-trends-2025.txt", "/doc/none.txt", "/embed"])
            yield "GET", path + "?" + "&".join(f"{k}={v}" for k, v in params.items()), b"", {}


def test_1000_malformed_requests_get_no_5xx(artifacts_dir):
    server = shared_server("main")
    rng = random.Random(13)
    statuses, by_path, server_errors, bad_ids = Counter(), Counter(), [], []
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for method, path, body, headers in requests(rng):
            sent_id = None
            if rng.random() < 0.33:
                sent_id = rng.choice(ODD_IDS)
                headers = {**headers, "X-Request-ID": sent_id}
            try:
                r = http.request(method, path, content=body or None, headers=headers)
                status = r.status_code
                if r.headers.get("content-type", "").startswith("text/event-stream"):
                    r.read()  # a stream that started must also end cleanly
                ids = [v for k, v in r.headers.raw if k.lower() == b"x-request-id"]
                names = {k.lower() for k, _ in r.headers.raw}
                if len(ids) != 1 or not CLEAN_ID.fullmatch(ids[0]) or b"set-cookie" in names:
                    bad_ids.append((path[:40], sent_id[:40] if sent_id else None, ids[:2]))
                elif sent_id is not None and CLEAN_ID.fullmatch(sent_id.strip()) and ids[0] != sent_id.strip():
                    bad_ids.append((path[:40], sent_id[:40], ids[0][:40]))  # a valid id comes back as sent
            except httpx.HTTPError as exc:  # a dropped connection counts as a server error
                status = f"{type(exc).__name__}"
            statuses[status] += 1
            by_path[(path.split("?")[0][:30], status)] += 1
            if not isinstance(status, int) or status >= 500:
                server_errors.append((method, path[:80], body[:120], status))
    (artifacts_dir / "fuzz.json").write_text(json.dumps(
        {"requests": sum(statuses.values()), "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
         "server_errors": len(server_errors), "bad_request_ids": len(bad_ids), "server_error_samples": [repr(e)[:300] for e in server_errors[:10]]},
        indent=1) + "\n")
    assert sum(statuses.values()) == N
    assert not server_errors, server_errors[:10]
    assert not bad_ids, bad_ids[:10]
    assert statuses and any(p.startswith(("/metrics", "/livez", "/readyz")) for p, _ in by_path)
    assert "Traceback" not in server.log_path.read_text(errors="replace")
