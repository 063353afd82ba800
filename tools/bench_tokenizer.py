#!/usr/bin/env python3
"""Tokenizer benchmark: ferrolm vs Hugging Face `tokenizers` (training) and `tiktoken` (encoding),
side by side in one run, plus the checks that they agree.

  cargo build --release -p ferrolm
  python3 tools/bench_tokenizer.py [--ferrolm target/release/ferrolm] [--data ../shared/data] [--repeats 3]

Training: stories-train.txt at vocab 10,000 with <|endoftext|>, all cores, wall time and peak RSS
of each trainer in its own process (median of --repeats runs).
Encoding: throughput (MB/s) on stories-train.txt with 1 and 2 threads, for ferrolm's tokenizer
(loaded by tiktoken from the same merges) and for GPT-2 (--gpt2-dir, the conformance files), and
a check that ferrolm, tiktoken and HF `tokenizers` (loading ferrolm's tokenizer.json) give identical
ids on stories-valid.txt. Also: corpus.en at vocab 500. The machine may be shared: compare ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
LAST_CPU = [0.0]


def run_measured(cmd, env=None):
    """Runs cmd, returns (wall seconds, peak RSS MB, stdout); CPU seconds (user + system) go to LAST_CPU."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read()
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out}\n{err}")
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, out


HF_TRAIN = r"""
import sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[2]), special_tokens=["<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
t = time.perf_counter()
tok.train([sys.argv[1]], trainer)
print(time.perf_counter() - t)
"""


def median(xs):
    return statistics.median(xs)


def bench_training(args, out_dir):
    train = os.path.join(args.data, "stories-train.txt")
    rows = {}
    for name in ["ferrolm", "hf"]:
        walls, rss, cpus = [], [], []
        for r in range(args.repeats):
            if name == "ferrolm":
                cmd = [args.ferrolm, "tokenizer", "train", "--input", train, "--vocab-size", "10000",
                       "--special-token", EOT, "--out", out_dir]
            else:
                cmd = [sys.executable, "-c", HF_TRAIN, train, "10000"]
            wall, mb, _ = run_measured(cmd)
            walls.append(wall)
            rss.append(mb)
            cpus.append(LAST_CPU[0])
        rows[name] = (median(walls), median(rss), walls, median(cpus))
    corpus = os.path.join(args.gpt2_dir, "corpus.en")
    small = []
    if os.path.exists(corpus):
        with tempfile.TemporaryDirectory() as d:
            for _ in range(5):
                wall, _, _ = run_measured([args.ferrolm, "tokenizer", "train", "--input", corpus, "--vocab-size",
                                           "500", "--out", d])
                small.append(wall)
    return rows, small


def load_tiktoken_from_ferrolm(tok_dir):
    import tiktoken
    from tokenizers import Tokenizer as HfTokenizer  # noqa: F401 (imported to fail early if missing)
    byte_decoder = gpt2_byte_decoder()
    vocab = json.load(open(os.path.join(tok_dir, "vocab.json"), encoding="utf-8"))
    ranks, specials = {}, {}
    for token, i in vocab.items():
        if token == EOT:
            specials[token] = i
        else:
            ranks[bytes(byte_decoder[c] for c in token)] = i
    return tiktoken.Encoding(name="ferrolm", pat_str=PAT, mergeable_ranks=ranks, special_tokens=specials)


def gpt2_byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def load_tiktoken_gpt2(gpt2_dir):
    import tiktoken
    byte_decoder = gpt2_byte_decoder()
    vocab = json.load(open(os.path.join(gpt2_dir, "gpt2_vocab.json"), encoding="utf-8"))
    ranks = {bytes(byte_decoder[c] for c in t): i for t, i in vocab.items() if t != EOT}
    return tiktoken.Encoding(name="gpt2-files", pat_str=PAT, mergeable_ranks=ranks, special_tokens={EOT: 50256})


def tiktoken_mb_s(enc, text, threads, repeats):
    """Median MB/s of tiktoken on text: encode() on 1 thread, encode_batch over line-aligned pieces on more."""
    n = len(text.encode("utf-8"))
    if threads > 1:
        pieces, step, start = [], max(1, len(text) // 256), 0
        while start < len(text):
            end = text.find("\n", start + step)
            end = len(text) if end < 0 else end + 1
            pieces.append(text[start:end])
            start = end
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        if threads == 1:
            enc.encode(text, allowed_special="all")
        else:
            enc.encode_batch(pieces, num_threads=threads, allowed_special="all")
        times.append(time.perf_counter() - t)
    return n / 1e6 / median(times)


def ferrolm_mb_s(args, tok_dir, path, threads, repeats):
    """Median MB/s printed by `ferrolm tokenizer encode` (includes mmap, UTF-8 check, .npy writing)."""
    rates = []
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.npy")
        for _ in range(repeats):
            _, _, stdout = run_measured([args.ferrolm, "--threads", str(threads), "tokenizer", "encode", "--tokenizer",
                                         tok_dir, "--input", path, "--output", out])
            rates.append(float(stdout.split(" MB/s")[0].split(",")[-1]))
    return median(rates)


def ferrolm_ids(args, tok_dir, path):
    import numpy as np
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.npy")
        run_measured([args.ferrolm, "tokenizer", "encode", "--tokenizer", tok_dir, "--input", path, "--output", out])
        return np.load(out, mmap_mode="r").tolist()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ferrolm", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                  "release", "ferrolm"))
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    p.add_argument("--gpt2-dir", default=os.path.join(ROOT, "..", "shared", "conformance", "tokenizer"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-training", action="store_true")
    args = p.parse_args()
    import tokenizers
    import tiktoken
    print(f"tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    tok_dir = tempfile.mkdtemp(prefix="ferrolm-bench-tok-")
    failures = []

    if not args.skip_training:
        rows, small = bench_training(args, tok_dir)
        (fw, fm, fws, fc), (hw, hm, hws, hc) = rows["ferrolm"], rows["hf"]
        print("\n== training: stories-train.txt, vocab 10,000, <|endoftext|> (median of %d)" % args.repeats)
        print(f"  {'':14}{'wall s':>9}{'CPU s':>9}{'peak MB':>10}   wall of each run")
        print(f"  {'ferrolm':14}{fw:9.2f}{fc:9.2f}{fm:10.0f}   {', '.join(f'{x:.2f}' for x in fws)}")
        print(f"  {'HF tokenizers':14}{hw:9.2f}{hc:9.2f}{hm:10.0f}   {', '.join(f'{x:.2f}' for x in hws)}")
        print(f"  ferrolm / HF: wall time {fw / hw:.2f} (goal <= 0.33), CPU time {fc / hc:.2f}"
              " (peak RSS includes the memory-mapped input)")
        if small:
            print(f"  corpus.en at vocab 500: ferrolm {median(small):.3f} s wall incl. process start (goal well under 0.5 s)")
    else:
        subprocess.run([args.ferrolm, "tokenizer", "train", "--input", os.path.join(args.data, "stories-train.txt"),
                        "--vocab-size", "10000", "--out", tok_dir], check=True, capture_output=True)

    train = os.path.join(args.data, "stories-train.txt")
    valid = os.path.join(args.data, "stories-valid.txt")
    text = open(train, encoding="utf-8").read()
    print("\n== encoding throughput, MB/s on stories-train.txt (median of %d; ferrolm figure includes file I/O)"
          % args.repeats)
    print(f"  {'tokenizer':22}{'threads':>8}{'ferrolm':>10}{'tiktoken':>10}{'ratio':>8}")
    gpt2_dir = tempfile.mkdtemp(prefix="ferrolm-bench-gpt2-")
    configs = [("ferrolm 10k", tok_dir, load_tiktoken_from_ferrolm(tok_dir))]
    if os.path.exists(os.path.join(args.gpt2_dir, "gpt2_vocab.json")):
        # Save GPT-2 as a ferrolm tokenizer dir (tokenizer.json with <|endoftext|>).
        subprocess.run([sys.executable, "-c", GPT2_TO_DIR, args.gpt2_dir, gpt2_dir], check=True)
        configs.append(("GPT-2 files", gpt2_dir, load_tiktoken_gpt2(args.gpt2_dir)))
    for name, d, enc in configs:
        for threads in [1, 2]:
            ours = ferrolm_mb_s(args, d, train, threads, args.repeats)
            theirs = tiktoken_mb_s(enc, text, threads, args.repeats)
            print(f"  {name:22}{threads:>8}{ours:10.1f}{theirs:10.1f}{ours / theirs:8.2f}")

    print("\n== identical ids on stories-valid.txt")
    vtext = open(valid, encoding="utf-8").read()
    from tokenizers import Tokenizer as HfTokenizer
    for name, d, enc in configs:
        ours = ferrolm_ids(args, d, valid)
        tk = enc.encode(vtext, allowed_special="all")
        hf = HfTokenizer.from_file(os.path.join(d, "tokenizer.json")).encode(vtext).ids
        for other, ids in [("tiktoken", tk), ("HF tokenizers (ferrolm's tokenizer.json)", hf)]:
            same = ids == ours
            if not same:
                failures.append(f"{name}: {other} differs")
            print(f"  {name}: ferrolm vs {other}: {'identical' if same else 'DIFFERENT'} ({len(ours)} ids)")
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


# Writes the GPT-2 conformance files as a tokenizer.json that ferrolm loads (via HF tokenizers).
GPT2_TO_DIR = r"""
import sys, json, os
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
src, dst = sys.argv[1], sys.argv[2]
bpe = models.BPE.from_file(os.path.join(src, "gpt2_vocab.json"), os.path.join(src, "gpt2_merges.txt"))
tok = Tokenizer(bpe)
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken("<|endoftext|>", normalized=False, special=True)])
tok.save(os.path.join(dst, "tokenizer.json"))
"""

if __name__ == "__main__":
    main()
