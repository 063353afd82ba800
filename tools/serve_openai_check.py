#!/usr/bin/env python3
"""The official `openai` Python client against `ferrolm serve`, unchanged but for base_url.

Starts `ferrolm serve --checkpoint CKPT --api-key KEY` on a free 127.0.0.1 port and checks:
models.list, a completion whose text equals `ferrolm generate`'s for the seed (greedy and
sampled), streaming (the chunks join to the same text), n, stop, a bad request raising
BadRequestError naming the field, and a wrong key raising AuthenticationError. Ctrl-C stops the
server at the end. Needs `pip install openai`.

Usage: python3 tools/serve_openai_check.py target/release/ferrolm RUN_OR_CHECKPOINT
"""

import http.client
import socket
import subprocess
import sys
import time

import openai


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(binary, ckpt, prompt, max_tokens, temperature, top_p, seed):
    out = subprocess.run(
        [binary, "generate", "--checkpoint", ckpt, "--prompt", prompt, "--no-echo", "--max-tokens", str(max_tokens),
         "--temperature", str(temperature), "--top-p", str(top_p), "--seed", str(seed)],
        check=True, capture_output=True, text=True).stdout
    assert out.endswith("\n")
    return out[:-1]


def main():
    binary, ckpt = sys.argv[1], sys.argv[2]
    port = free_port()
    server = subprocess.Popen([binary, "serve", "--checkpoint", ckpt, "--port", str(port), "--api-key", "k1"])
    try:
        deadline = time.time() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health", headers={"Authorization": "Bearer k1"})
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k1")
        models = client.models.list()
        model = models.data[0].id
        print("models:", [m.id for m in models.data])
        prompt = "Once upon a time"
        for temperature, top_p, seed in [(0.0, 1.0, 1), (0.8, 0.9, 7)]:
            r = client.completions.create(model=model, prompt=prompt, max_tokens=40, temperature=temperature,
                                          top_p=top_p, seed=seed)
            want = generate(binary, ckpt, prompt, 40, temperature, top_p, seed)
            assert r.choices[0].text == want, (r.choices[0].text, want)
            assert r.usage.completion_tokens <= 40 and r.usage.prompt_tokens > 0
            assert r.choices[0].finish_reason in ("stop", "length")
            chunks = client.completions.create(model=model, prompt=prompt, max_tokens=40, temperature=temperature,
                                               top_p=top_p, seed=seed, stream=True)
            streamed = "".join(c.choices[0].text for c in chunks if c.choices)
            assert streamed == want, (streamed, want)
            print(f"temperature {temperature} seed {seed}: served == generate, streamed == generate")
        r = client.completions.create(model=model, prompt=prompt, max_tokens=8, n=3, seed=3)
        assert [c.index for c in r.choices] == [0, 1, 2]
        full = r.choices[0].text
        if len(full) > 4:
            stop = full[2:4]
            s = client.completions.create(model=model, prompt=prompt, max_tokens=8, seed=3, stop=[stop])
            assert s.choices[0].text == full[:full.find(stop)] and s.choices[0].finish_reason == "stop"
        try:
            client.completions.create(model=model, prompt=prompt, max_tokens=8, top_p=1.5)
            raise AssertionError("top_p 1.5 was accepted")
        except openai.BadRequestError as e:
            assert "top_p" in str(e), e
        try:
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong").models.list()
            raise AssertionError("a wrong key was accepted")
        except openai.AuthenticationError:
            pass
        print("openai client check: all passed")
    finally:
        server.send_signal(2)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0, f"the server exited with {server.returncode} after Ctrl-C"


if __name__ == "__main__":
    main()
