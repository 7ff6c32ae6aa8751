"""Server benchmark: cold start with a prebuilt index, then POST /api/ask latency with 1 and 8 clients;
or a soak: many clients for minutes, mixing /api/ask, its SSE stream and /v1/chat/completions.

    .venv/bin/python bench/server_bench.py [--requests 200] [--starts 2]
    .venv/bin/python bench/server_bench.py --soak [--minutes 10] [--clients 16]
    .venv/bin/python bench/server_bench.py --overhead [--rounds 6]   # metrics + access log on vs off

Runs the real `python app.py` on loopback (rate limit off, no keys), closed loop: each client
sends its next request when the previous answer arrives. Cold start = process start until
/api/health says "ready" (questions are answered); "warm" = its warm-up questions are done too. "Server overhead" is the wall time
minus the engine's own `timings_ms.total`: what HTTP, validation and JSON add on top of chat.
"Server CPU ms per request" (from /proc) is what a request costs when the CPUs are not shared
with other work. Writes build/bench/server_bench.json (untracked) or --out, e.g.
bench/results/server_bench.json, the kept one.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from browser.harness import make_corpus, start_server  # noqa: E402

# untracked by default; --out bench/results/server_bench.json (server_soak.json) updates the kept results
RESULTS = REPO / "build" / "bench" / "server_bench.json"
SOAK_RESULTS = REPO / "build" / "bench" / "server_soak.json"
TARGETS = {"cold_start_s": 10.0, "p95_ms_1_client": 150.0, "p95_ms_8_clients": 1000.0, "errors_8_clients": 0}


def questions() -> list[str]:
    path = REPO / "data" / "questions" / "dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows if not r.get("history")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to separate work from waiting."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(url: str, qs: list[str], total: int, clients: int, pid: int | None = None) -> dict:
    latencies: list[float] = []
    overheads: list[float] = []  # wall time minus the engine's own timings_ms.total: HTTP + server
    stages: dict[str, list[float]] = {"retrieve": [], "read": []}  # the engine's own timings_ms
    errors: list[str] = []
    counter = iter(range(total))
    lock = threading.Lock()

    def client():
        with httpx.Client(base_url=url, timeout=60) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                engine_ms = None
                try:
                    r = http.post("/api/ask", json={"question": qs[i % len(qs)]})
                    ok = r.status_code == 200 and "answer" in r.json()
                    err = None if ok else f"{r.status_code}: {r.text[:100]}"
                    timings = r.json()["timings_ms"] if ok else {}
                    engine_ms = timings.get("total")
                except httpx.HTTPError as exc:
                    err = repr(exc)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(ms)
                    if engine_ms is not None:
                        overheads.append(ms - engine_ms)
                        for stage, values in stages.items():
                            values.append(timings.get(stage, 0.0))
                    if err:
                        errors.append(err)

    cpu0 = cpu_seconds(pid) if pid else None
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu_ms = (cpu_seconds(pid) - cpu0) * 1000 / len(latencies) if pid else None
    return {"server_cpu_ms_per_request": round(cpu_ms, 1) if cpu_ms is not None else None, "clients": clients, "requests": len(latencies), "errors": len(errors), "error_samples": errors[:3],
            "p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "max_ms": round(max(latencies), 1), "throughput_rps": round(len(latencies) / wall, 1),
            "server_overhead_p50_ms": round(statistics.median(overheads), 1) if overheads else None,
            "server_overhead_p95_ms": round(percentile(overheads, 95), 1) if overheads else None,
            **{f"engine_{stage}_p50_ms": round(statistics.median(v), 1) for stage, v in stages.items() if v}}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def soak_requests() -> list[dict]:
    """Every dev question, follow-ups with their history, in a fixed order."""
    path = REPO / "data" / "questions" / "dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"question": r["question"], "history": r.get("history") or []} for r in rows]


def one_soak_request(http: httpx.Client, kind: str, q: dict) -> str | None:
    """Send one request of `kind`; None when it answered completely, else what went wrong."""
    if kind == "ask":
        r = http.post("/api/ask", json=q)
        return None if r.status_code == 200 and "citations" in r.json() else f"ask {r.status_code}: {r.text[:80]}"
    if kind == "sse":
        with http.stream("POST", "/api/ask/stream", json=q) as r:
            if r.status_code != 200:
                return f"sse {r.status_code}"
            last = [line for line in r.iter_lines() if line.startswith("event: ")][-1:]
        return None if last == ["event: answer"] else f"sse ended with {last}"
    messages = q["history"] + [{"role": "user", "content": q["question"]}]
    body = {"model": "clusterqa", "messages": messages, "stream": kind == "v1-stream"}
    if kind == "v1":
        r = http.post("/v1/chat/completions", json=body)
        return None if r.status_code == 200 and "clusterqa" in r.json() else f"v1 {r.status_code}: {r.text[:80]}"
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            return f"v1-stream {r.status_code}"
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    ok = len(data) >= 2 and data[-1] == "[DONE]" and "clusterqa" in json.loads(data[-2])
    return None if ok else "v1-stream ended without the answer"


def soak(url: str, pid: int, minutes: float, clients: int, warmup_minutes: float = 1.0) -> dict:
    """`clients` closed-loop clients for `minutes`, kinds in rotation; RSS sampled every 5 s."""
    kinds = ["ask", "sse", "v1", "v1-stream"]
    qs = soak_requests()
    t_start = time.monotonic()
    t_end = t_start + minutes * 60
    records: list[tuple[float, str, float, str | None]] = []  # (t, kind, ms, error)
    rss: list[tuple[float, float]] = []
    lock = threading.Lock()
    counter = iter(range(1 << 62))

    def client(c: int):
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < t_end:
                with lock:
                    i = next(counter)
                kind, q = kinds[i % len(kinds)], qs[(i // len(kinds)) % len(qs)]
                t0 = time.perf_counter()
                try:
                    err = one_soak_request(http, kind, q)
                except (httpx.HTTPError, ValueError, IndexError) as exc:
                    err = f"{kind}: {type(exc).__name__}: {exc}"[:120]
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    records.append((time.monotonic() - t_start, kind, ms, err))

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    while time.monotonic() < t_end:
        rss.append((round(time.monotonic() - t_start, 1), round(rss_mb(pid), 1)))
        time.sleep(5)
    for t in threads:
        t.join(90)
    rss.append((round(time.monotonic() - t_start, 1), round(rss_mb(pid), 1)))

    per_minute = []
    for m in range(int(math.ceil(minutes))):
        lat = [ms for t, _, ms, _ in records if m * 60 <= t < (m + 1) * 60]
        errs = sum(1 for t, _, _, e in records if m * 60 <= t < (m + 1) * 60 and e)
        if lat:
            per_minute.append({"minute": m + 1, "requests": len(lat), "errors": errs,
                               "p50_ms": round(statistics.median(lat), 1), "p95_ms": round(percentile(lat, 95), 1)})
    after = [ms for t, _, ms, _ in records if t >= warmup_minutes * 60]
    by_kind = {k: round(percentile([ms for t, kk, ms, _ in records if kk == k and t >= warmup_minutes * 60], 95), 1)
               for k in kinds}
    # RSS rises and falls with the activations in flight: growth compares peaks, the warm-up's
    # against the last minute's (the end sample alone read a trough as a 15 % fall once)
    warm_rss = max(v for t, v in rss if t <= warmup_minutes * 60)
    last_minute_rss = max(v for t, v in rss if t >= rss[-1][0] - 60)
    errors = [e for *_, e in records if e]
    return {"minutes": minutes, "warmup_minutes": warmup_minutes, "clients": clients, "mix": kinds, "requests": len(records),
            "errors": len(errors), "error_samples": errors[:5],
            "throughput_rps": round(len(records) / (minutes * 60), 1),
            "p95_ms_after_warmup": round(percentile(after, 95), 1), "p50_ms_after_warmup": round(statistics.median(after), 1),
            "p95_ms_by_kind_after_warmup": by_kind, "per_minute": per_minute,
            "rss_mb": {"after_warmup": warm_rss, "last_minute_peak": last_minute_rss, "end": rss[-1][1],
                       "max": max(v for _, v in rss),
                       "growth_after_warmup_pct": round(100 * (last_minute_rss - warm_rss) / warm_rss, 2),
                       "samples": rss}}


def soak_main(args) -> None:
    home = Path(tempfile.mkdtemp(prefix="clusterqa-soak-"))
    corpus = make_corpus(home, with_xss=False)
    server = start_server("soak", home=home / "run", corpus=corpus, index_dir=home / "index", rate_limit_per_minute=0)
    try:
        while not httpx.get(server.url + "/api/health").json().get("warm"):
            time.sleep(0.5)
        health = httpx.get(server.url + "/api/health").json()
        load0 = os.getloadavg()
        result = soak(server.url, server.proc.pid, args.minutes, args.clients, min(args.warmup, args.minutes / 2))
        load1 = os.getloadavg()
        log_text = server.log_path.read_text(errors="replace")
    finally:
        server.stop()
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_avg_before": [round(x, 2) for x in load0], "load_avg_after": [round(x, 2) for x in load1]},
              "documents": health["documents"], "chunks": health["chunks"], "mode": health["mode"],
              **result, "server_tracebacks": log_text.count("Traceback"),
              "targets": {"errors": 0, "rss_growth_pct": 5.0, "p95_ms": 1000.0}}
    result["met"] = {"errors": result["errors"] == 0 and result["server_tracebacks"] == 0,
                     "rss_growth": result["rss_mb"]["growth_after_warmup_pct"] <= 5.0,
                     "p95": result["p95_ms_after_warmup"] <= 1000.0}
    out = Path(args.out or SOAK_RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nClusterQA soak: {args.clients} clients, {args.minutes:g} min, {result['requests']} requests "
          f"({result['throughput_rps']} req/s), load avg {result['machine']['load_avg_after'][0]}")
    print(f"errors {result['errors']} (server tracebacks {result['server_tracebacks']}); p95 after warm-up "
          f"{result['p95_ms_after_warmup']} ms; RSS peak {result['rss_mb']['after_warmup']} -> {result['rss_mb']['last_minute_peak']} MB "
          f"({result['rss_mb']['growth_after_warmup_pct']:+.2f} %)")
    for m in result["per_minute"]:
        print(f"  minute {m['minute']:>2}: {m['requests']:>5} requests, {m['errors']} errors, p50 {m['p50_ms']:>7} ms, "
              f"p95 {m['p95_ms']:>7} ms")
    print(f"written {out}")


def overhead_main(args) -> None:
    """Metrics and access logging on vs off (issue 29): two servers on one prebuilt index, the
    same requests sent to each in alternating rounds (so a shared machine's load drifts alike
    over both): GET /api/health (the server's own path, no engine) and POST /api/ask."""
    home = Path(tempfile.mkdtemp(prefix="clusterqa-overhead-"))
    corpus, index_dir = make_corpus(home, with_xss=False), home / "index"
    config = dict(corpus=corpus, index_dir=index_dir, rate_limit_per_minute=0)
    start_server("overhead-build", home=home / "build", **config).stop()  # builds the index once
    servers = {"on": start_server("overhead-on", home=home / "on", **config),
               "off": start_server("overhead-off", home=home / "off", metrics_enabled="false", access_log="false",
                                   **config)}
    qs = questions()
    lat: dict = {(name, what): [] for name in servers for what in ("health", "ask")}
    try:
        for server in servers.values():
            while not httpx.get(server.url + "/api/health").json().get("warm"):
                time.sleep(0.2)
            run_load(server.url, qs, 5, 1)
        clients = {name: httpx.Client(base_url=s.url, timeout=60) for name, s in servers.items()}
        for rnd in range(args.rounds):
            order = list(servers) if rnd % 2 == 0 else list(reversed(list(servers)))
            for name in order:
                http = clients[name]
                for _ in range(args.health_requests):
                    t0 = time.perf_counter()
                    http.get("/api/health").raise_for_status()
                    lat[(name, "health")].append((time.perf_counter() - t0) * 1000)
                for i in range(args.ask_requests):
                    t0 = time.perf_counter()
                    r = http.post("/api/ask", json={"question": qs[(rnd * args.ask_requests + i) % len(qs)]})
                    r.raise_for_status()
                    lat[(name, "ask")].append((time.perf_counter() - t0) * 1000 - r.json()["timings_ms"]["total"])
    finally:
        for server in servers.values():
            server.stop()
    summary = {f"{what}_{name}": {"n": len(v), "p50_ms": round(statistics.median(v), 3),
                                  "p95_ms": round(percentile(v, 95), 3)}
               for (name, what), v in lat.items()}
    for what in ("health", "ask"):
        summary[f"{what}_p50_difference_ms"] = round(summary[f"{what}_on"]["p50_ms"] - summary[f"{what}_off"]["p50_ms"], 3)
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_avg_1m": round(os.getloadavg()[0], 2)},
              "what": "on = metrics_enabled + access_log (defaults); off = both false (request ids stay on). "
                      "health: GET /api/health wall ms; ask: POST /api/ask wall ms minus the engine's timings_ms.total",
              "rounds": args.rounds, **summary, "target_p50_difference_ms": 1.0}
    out = Path(args.out or RESULTS.with_name("server_overhead.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"written {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--starts", type=int, default=2, help="cold starts to time (median reported)")
    parser.add_argument("--soak", action="store_true", help="run the soak instead (writes server_soak.json)")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length")
    parser.add_argument("--clients", type=int, default=16, help="soak clients")
    parser.add_argument("--warmup", type=float, default=1.0, help="soak minutes before RSS and p95 are judged")
    parser.add_argument("--out", help="results file (default: build/bench/server_bench.json or server_soak.json, "
                                      "untracked; the kept ones are in bench/results)")
    parser.add_argument("--overhead", action="store_true",
                        help="metrics + access log on vs off, two servers, same run (writes server_overhead.json)")
    parser.add_argument("--rounds", type=int, default=6, help="--overhead: alternating rounds")
    parser.add_argument("--health-requests", type=int, default=200, help="--overhead: GET /api/health per round")
    parser.add_argument("--ask-requests", type=int, default=10, help="--overhead: POST /api/ask per round")
    args = parser.parse_args()
    if args.soak:
        return soak_main(args)
    if args.overhead:
        return overhead_main(args)

    home = Path(tempfile.mkdtemp(prefix="clusterqa-bench-"))
    corpus, index_dir = make_corpus(home, with_xss=False), home / "index"
    config = dict(corpus=corpus, index_dir=index_dir, rate_limit_per_minute=0)

    t0 = time.monotonic()
    first = start_server("bench-build", home=home / "build", **config)  # builds the index once
    build_s = time.monotonic() - t0
    first.stop()

    starts, start_cpu, warm = [], [], []
    for n in range(args.starts):
        server = start_server(f"bench-{n}", home=home / f"run{n}", **config)
        starts.append(round(server.started_s, 2))
        start_cpu.append(round(cpu_seconds(server.proc.pid), 2))
        t0 = time.monotonic()
        while not httpx.get(server.url + "/api/health").json().get("warm"):
            time.sleep(0.1)
        warm.append(round(server.started_s + time.monotonic() - t0, 2))
        if n < args.starts - 1:
            server.stop()
    health = httpx.get(server.url + "/api/health").json()
    try:
        qs = questions()
        run_load(server.url, qs, 10, 1)  # warm-up: first-call costs (caches, lazy imports)
        one = run_load(server.url, qs, args.requests, 1, server.proc.pid)
        eight = run_load(server.url, qs, args.requests, 8, server.proc.pid)
    finally:
        server.stop()

    cold = statistics.median(starts)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "documents": health["documents"], "chunks": health["chunks"], "model": health["model"],
        "mode": health["mode"], "first_start_with_build_s": round(build_s, 2),
        "cold_start_s": {"runs": starts, "median": cold, "server_cpu_s": start_cpu,
                         "to_warm_runs": warm, "to_warm_median": statistics.median(warm)},
        "one_client": one, "eight_clients": eight, "targets": TARGETS,
        "met": {"cold_start": cold <= TARGETS["cold_start_s"],
                "p95_1_client": one["p95_ms"] <= TARGETS["p95_ms_1_client"],
                "8_clients": eight["errors"] == 0 and eight["p95_ms"] <= TARGETS["p95_ms_8_clients"]},
    }
    out = Path(args.out or RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    print(f"\nClusterQA server benchmark ({result['documents']} docs, {result['chunks']} chunks, "
          f"{result['mode']}, load avg {result['machine']['load_avg_1m']})")
    print(f"{'measure':<34}{'value':>12}{'target':>12}{'met':>6}")
    rows = [
        ("first start (builds index), s", build_s, None, None),
        ("cold start, prebuilt index, s", cold, TARGETS["cold_start_s"], result["met"]["cold_start"]),
        ("cold start, server CPU s", statistics.median(start_cpu), None, None),
        ("start to warm (warm-up done), s", statistics.median(warm), None, None),
        ("1 client  p50 ms", one["p50_ms"], None, None),
        ("1 client  p95 ms", one["p95_ms"], TARGETS["p95_ms_1_client"], result["met"]["p95_1_client"]),
        ("1 client  errors", one["errors"], 0, one["errors"] == 0),
        ("8 clients p50 ms", eight["p50_ms"], None, None),
        ("8 clients p95 ms", eight["p95_ms"], TARGETS["p95_ms_8_clients"], result["met"]["8_clients"]),
        ("8 clients errors", eight["errors"], 0, eight["errors"] == 0),
        ("8 clients throughput req/s", eight["throughput_rps"], None, None),
        ("server overhead p50 ms, 1 client", one["server_overhead_p50_ms"], None, None),
        ("server overhead p95 ms, 1 client", one["server_overhead_p95_ms"], None, None),
        ("server overhead p95 ms, 8 clients", eight["server_overhead_p95_ms"], None, None),
        ("server CPU ms per request, 1 client", one["server_cpu_ms_per_request"], None, None),
        ("engine retrieve p50 ms, 1 client", one.get("engine_retrieve_p50_ms", 0.0), None, None),
        ("engine read (reader) p50 ms, 1 client", one.get("engine_read_p50_ms", 0.0), None, None),
    ]
    for name, value, target, met in rows:
        t = "" if target is None else f"{target:g}"
        m = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<34}{value:>12.1f}{t:>12}{m:>6}")
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
