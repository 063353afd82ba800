#!/usr/bin/env python3
"""Load test for `ferrolm serve`: N concurrent streaming clients on 127.0.0.1.

Starts `ferrolm serve --checkpoint CKPT` on a free local port (or uses --url of a running server
on 127.0.0.1), then for each concurrency in --streams runs that many streaming completions at
once (each with its own seed) and prints aggregate tokens/s and per-token latency (a stream's
time from request to [DONE] over its tokens, mean over the streams), median of --repeats runs. Every streamed text must equal the text
the same request gives alone (fetched first, one at a time): nothing lost or mixed up between
streams. Bounded: at most 16 streams, --max-tokens tokens each, a --timeout per request.

Usage:
  python3 tools/serve_load.py --bin target/release/ferrolm --checkpoint runs/small \\
      --streams 1,2,4,8,16 --max-tokens 64
Standard library only.
"""

import argparse
import concurrent.futures as cf
import http.client
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

PROMPT = "Once upon a time"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(host, port, body, timeout):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    return c, c.getresponse()


def single(host, port, seed, args):
    body = {"prompt": PROMPT, "max_tokens": args.max_tokens, "temperature": args.temperature,
            "top_p": 0.95, "seed": seed}
    c, r = post(host, port, body, args.timeout)
    data = json.loads(r.read())
    c.close()
    if r.status != 200:
        raise SystemExit(f"request failed: {r.status} {data}")
    return data["choices"][0]["text"]


def stream(host, port, seed, args):
    """One streaming request: (text, token count, seconds from first to last token)."""
    body = {"prompt": PROMPT, "max_tokens": args.max_tokens, "temperature": args.temperature,
            "top_p": 0.95, "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    c, r = post(host, port, body, args.timeout)
    if r.status != 200:
        raise SystemExit(f"stream failed: {r.status} {r.read()!r}")
    text, tokens, times = [], 0, []
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for ch in chunk["choices"]:
            if ch["text"]:
                text.append(ch["text"])
                times.append(time.perf_counter())
    c.close()
    return "".join(text), tokens, start, time.perf_counter()


def run_level(host, port, n, want, args):
    seeds = list(range(1, n + 1))
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda s: stream(host, port, s, args), seeds))
    wall = time.perf_counter() - t0
    total = 0
    gaps = []
    for seed, (text, tokens, start, end) in zip(seeds, results):
        if text != want[seed]:
            raise SystemExit(f"{n} streams: seed {seed}'s streamed text differs from its single run:\n"
                             f"  streamed {text!r}\n  single   {want[seed]!r}")
        total += tokens
        if tokens > 0:
            gaps.append((end - start) / tokens)
    return total / wall, statistics.mean(gaps) * 1000 if gaps else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/ferrolm")
    ap.add_argument("--checkpoint", help="start a server for this checkpoint or run directory")
    ap.add_argument("--url", help="use this running server instead (127.0.0.1 only)")
    ap.add_argument("--precision", default="f32")
    ap.add_argument("--streams", default="1,2,4,8,16")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    levels = [int(x) for x in args.streams.split(",")]
    if max(levels) > 16 or min(levels) < 1 or args.max_tokens > 1024:
        raise SystemExit("bounded: 1-16 streams, at most 1024 tokens each")
    server = None
    if args.url:
        u = urllib.parse.urlparse(args.url)
        if u.hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit("the load test only targets 127.0.0.1")
        host, port = "127.0.0.1", u.port
    else:
        if not args.checkpoint:
            raise SystemExit("give --checkpoint (start a server) or --url (a running one)")
        host, port = "127.0.0.1", free_port()
        server = subprocess.Popen([args.bin, "serve", "--checkpoint", args.checkpoint, "--port", str(port),
                                   "--precision", args.precision, "--max-batch", "16"])
        deadline = time.time() + 60
        while True:
            try:
                c = http.client.HTTPConnection(host, port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
    try:
        want = {s: single(host, port, s, args) for s in range(1, max(levels) + 1)}
        print(f"ferrolm serve, {args.max_tokens} tokens per stream, temperature {args.temperature}, "
              f"precision {args.precision}, median of {args.repeats}")
        print(f"{'streams':>8} {'agg tok/s':>10} {'x1':>6} {'ms/token':>9}")
        base = None
        for n in levels:
            runs = [run_level(host, port, n, want, args) for _ in range(args.repeats)]
            tps = statistics.median(r[0] for r in runs)
            lat = statistics.median(r[1] for r in runs)
            base = base or tps
            print(f"{n:>8} {tps:>10.1f} {tps / base:>6.2f} {lat:>9.2f}")
        print("every stream's text equals its single-request text")
    finally:
        if server:
            server.send_signal(2)  # Ctrl-C: the server drains and exits
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
