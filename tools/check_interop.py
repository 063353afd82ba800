#!/usr/bin/env python3
"""End-to-end check of `ferrolm export` / `ferrolm import` / `train --init-from` against independent
implementations (development tools, never product dependencies):

- Hugging Face transformers (f32, CPU) loads the exported directory with no custom code; its logits
  on held-out tokens match ferrolm's (max abs diff <= 1e-4), 64 greedy tokens are the same ids, and
  AutoTokenizer gives ferrolm's ids on real text and decodes them back;
- import round trip: the exported directory imported back gives ferrolm's logits bitwise; a
  directory written by transformers itself (bf16, sharded, tied embeddings) imports and gives
  transformers' logits;
- GGUF: the `gguf` package reads the files back (names, shapes, values, tokenizer metadata), and
  llama.cpp (through llama-cpp-python) runs them: the same greedy continuation for f32 and f16,
  and the held-out loss of Q8_0 against f32;
- `train --init-from`: fine-tuning an imported model on other text starts from its loss.

Usage: python3 tools/check_interop.py [--ferrolm target/release/ferrolm] [--probe PATH] [--keep DIR]
Needs: pip install torch transformers gguf numpy safetensors, and bash tools/install_llama_cpp.sh
(llama.cpp's libraries and its Python bindings); .ci/run does both.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FAILURES = []
PASSED = [0]


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if ok:
        PASSED[0] += 1
    else:
        FAILURES.append(what)


def run(*cmd, capture=False):
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], check=True, text=True,
                       stdout=subprocess.PIPE if capture else None)
    return r.stdout if capture else None


def corpus(ferrolm, work):
    """Training text, held-out text (real English when ../shared/data exists) and other text."""
    synth = work / "synthetic.txt"
    run(ferrolm, "quickstart", "--corpus-only", synth, "--corpus-mb", "2", "--seed", "3")
    lines = synth.read_text().splitlines(keepends=True)
    if (SHARED / "stories-train.txt").exists():
        with open(SHARED / "stories-train.txt", encoding="utf-8") as f:
            train = f.read(3_000_000)
        with open(SHARED / "stories-valid.txt", encoding="utf-8") as f:
            valid = f.read(200_000)
        other = "".join(lines)
        source = "../shared/data stories (Project Gutenberg); fine-tuning on the synthetic corpus"
    else:
        n = len(lines)
        train, valid = "".join(lines[: n * 3 // 4]), "".join(lines[n * 3 // 4: n * 4 // 5])
        other = "".join(lines[n * 4 // 5:])
        source = "the synthetic quickstart corpus (../shared/data not found)"
    train = train[: train.rfind("\n") + 1]
    valid = valid[: valid.rfind("\n") + 1]
    for name, text in [("train", train), ("valid", valid), ("other", other)]:
        (work / f"{name}.txt").write_text(text)
    print(f"data: {source}")


def ferrolm_ids(ferrolm, work, name):
    run(ferrolm, "tokenizer", "encode", "--tokenizer", work / "tok", "--input", work / f"{name}.txt",
        "--output", work / f"{name}.npy")
    return np.load(work / f"{name}.npy").astype(np.int64)


def probe_logits(probe, ckpt, ids, vocab, work):
    out = work / "logits.bin"
    run(probe, "logits", ckpt, ",".join(map(str, ids)), out)
    return np.fromfile(out, dtype="<f4").reshape(len(ids), vocab)


def probe_greedy(probe, ckpt, ids, k):
    return [int(x) for x in run(probe, "greedy", ckpt, ",".join(map(str, ids)), k, capture=True).split(",")]


def torch_greedy(model, ids, k):
    import torch
    ids = list(ids)
    out = []
    with torch.no_grad():
        for _ in range(k):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(nxt)
            out.append(nxt)
    return out


def check_hf(args, work, ckpt, held, prompt, vocab):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = work / "hf"
    run(args.ferrolm, "export", "--checkpoint", ckpt, "--format", "hf", "--out", hf)
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(torch.tensor([held])).logits[0].numpy()
    ours = probe_logits(args.probe, ckpt, held, vocab, work)
    diff = float(np.abs(theirs - ours).max())
    check(diff <= 1e-4, f"transformers logits on {len(held)} held-out tokens: max abs diff {diff:.2e} <= 1e-4")
    g_ours = probe_greedy(args.probe, ckpt, prompt, 64)
    g_theirs = torch_greedy(model, prompt, 64)
    check(g_ours == g_theirs, f"64 greedy tokens the same ids (ferrolm {g_ours[:12]}..., transformers {g_theirs[:12]}..., {len(set(g_ours))} distinct)")

    tok = AutoTokenizer.from_pretrained(hf)
    text = (work / "valid.txt").read_text()[:50_000]
    (work / "probe_text.txt").write_text(text)
    ids_ours = ferrolm_ids(args.ferrolm, work, "probe_text").tolist()
    ids_theirs = tok(text)["input_ids"]
    check(ids_ours == ids_theirs, f"AutoTokenizer ids == ferrolm ids on {len(text)} chars of held-out text ({len(ids_ours)} tokens)")
    check(tok.decode(ids_theirs) == text, "AutoTokenizer decodes them back to the text")
    eot = "<|endoftext|>"
    check(tok.eos_token == eot and tok(eot)["input_ids"] == [model.config.eos_token_id],
          f"eos_token {tok.eos_token!r} is one special id")
    return hf, model, ours


def check_import(args, work, hf, model, ours, held, vocab):
    import torch
    from transformers import AutoModelForCausalLM

    back = work / "imported"
    run(args.ferrolm, "import", "--from", hf, "--out", back)
    again = probe_logits(args.probe, back, held, vocab, work)
    check(np.array_equal(again, ours), "export -> import gives ferrolm's logits bitwise")

    # A directory transformers writes itself: bf16, sharded, tied embeddings.
    tied = work / "hf-tied-bf16"
    m = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    m.config.tie_word_embeddings = True
    m.lm_head.weight = m.model.embed_tokens.weight
    m.to(torch.bfloat16).save_pretrained(tied, max_shard_size="200KB")
    shutil.copy(hf / "tokenizer.json", tied / "tokenizer.json")
    shards = sorted(p.name for p in tied.glob("*.safetensors"))
    ref = AutoModelForCausalLM.from_pretrained(tied, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = ref(torch.tensor([held])).logits[0].numpy()
    run(args.ferrolm, "import", "--from", tied, "--out", work / "imported-tied")
    got = probe_logits(args.probe, work / "imported-tied", held, vocab, work)
    diff = float(np.abs(theirs - got).max())
    check(diff <= 1e-4 and len(shards) > 1,
          f"transformers-written bf16, tied, {len(shards)} shards: imported logits max abs diff {diff:.2e}")
    return back


def gguf_checks(args, work, ckpt, tokj):
    import gguf
    from safetensors.numpy import load_file

    params = load_file(str(Path(ckpt) / "model.safetensors"))
    paths = {}
    for dtype in ["f32", "f16", "q8_0"]:
        p = work / f"model-{dtype}.gguf"
        run(args.ferrolm, "export", "--checkpoint", ckpt, "--format", "gguf", "--dtype", dtype, "--out", p)
        paths[dtype] = p
    r = gguf.GGUFReader(str(paths["f32"]))
    field = lambda k: r.fields[k]
    val = lambda k: field(k).contents()
    check(val("general.architecture") == "llama", "gguf: general.architecture = llama")
    names = {t.name: t for t in r.tensors}
    wq = params["layers.0.attn.q_proj.weight"]
    t = names["blk.0.attn_q.weight"]
    check(np.array_equal(np.asarray(t.data).reshape(wq.shape), wq),
          "gguf f32: blk.0.attn_q.weight holds ferrolm's q rows unpermuted (values equal)")
    emb = params["token_embeddings.weight"]
    t = names["token_embd.weight"]
    check(list(t.shape) == [emb.shape[1], emb.shape[0]] and np.array_equal(np.asarray(t.data).reshape(emb.shape), emb),
          f"gguf f32: token_embd.weight shape {list(t.shape)} (innermost first), values equal")
    check(len(names) == len(params), f"gguf: {len(names)} tensors, the checkpoint has {len(params)}")
    vocab = tokj["model"]["vocab"]
    toks = val("tokenizer.ggml.tokens")
    by_id = {i: s for s, i in vocab.items()}
    for a in tokj["added_tokens"]:
        by_id[a["id"]] = a["content"]
    check(val("tokenizer.ggml.model") == "gpt2" and all(toks[i] == s for i, s in by_id.items()),
          f"gguf: gpt2 tokenizer, {len(toks)} tokens equal to tokenizer.json's")
    check(val("tokenizer.ggml.merges") == tokj["model"]["merges"], "gguf: merges equal to tokenizer.json's")
    eot = next(a["id"] for a in tokj["added_tokens"] if a["content"] == "<|endoftext|>")
    check(val("tokenizer.ggml.eos_token_id") == eot, f"gguf: eos_token_id {eot}")
    r16 = gguf.GGUFReader(str(paths["f16"]))
    t = {t.name: t for t in r16.tensors}["blk.1.ffn_up.weight"]
    w3 = params["layers.1.ffn.w3.weight"]
    check(np.array_equal(np.asarray(t.data).reshape(w3.shape), w3.astype(np.float16)), "gguf f16: values are f16(ferrolm)")
    r8 = gguf.GGUFReader(str(paths["q8_0"]))
    t = {t.name: t for t in r8.tensors}["blk.1.ffn_gate.weight"]
    deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(params["layers.1.ffn.w1.weight"].shape)
    err = float(np.abs(deq - params["layers.1.ffn.w1.weight"]).max())
    check(t.tensor_type == gguf.GGMLQuantizationType.Q8_0 and err < 0.01, f"gguf q8_0: dequantized max error {err:.4f}")
    return paths


def llama_cpp_checks(paths, prompt, held, ours, ours_greedy, windows):
    """llama.cpp runs the GGUF files: f32 logits vs ferrolm's `ours` on `held`, greedy ids for f32
    and f16, and the held-out loss over `windows` for f32, f16 and Q8_0."""
    if "LLAMA_CPP_LIB_PATH" not in os.environ:
        built = sorted(Path.home().glob(".cache/ferrolm/llama-cpp-*/build/bin/libllama.so"))
        if built:
            os.environ["LLAMA_CPP_LIB_PATH"] = str(built[-1].parent)
    try:
        from llama_cpp import Llama
    except (ImportError, OSError, RuntimeError) as e:
        check(False, f"llama-cpp-python loads ({e}; install it with tools/install_llama_cpp.sh)")
        return
    print(f"llama.cpp libraries: {os.environ.get('LLAMA_CPP_LIB_PATH', 'the package’s own')}")

    def load(p):
        # An f32 KV cache (type 0): llama.cpp's default f16 cache alone moves logits by ~4e-3.
        return Llama(model_path=str(p), n_ctx=256, logits_all=True, verbose=False, n_threads=2,
                     type_k=0, type_v=0)

    def greedy(llm, ids, k):
        llm.reset()
        llm.eval(list(ids))
        out = []
        for _ in range(k):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(nxt)
            llm.eval([nxt])
        return out

    def logits(llm, ids):
        llm.reset()
        llm.eval(list(ids))
        return np.asarray(llm.scores[: len(ids)], dtype=np.float64)

    def loss(llm, windows):
        total, n = 0.0, 0
        for w in windows:
            lg = logits(llm, w[:-1])
            m = lg.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(lg - m).sum(axis=1))
            total += float(np.sum(lse - lg[np.arange(len(w) - 1), w[1:]]))
            n += len(w) - 1
        return total / n

    losses = {}
    for dtype in ["f32", "f16", "q8_0"]:
        llm = load(paths[dtype])
        if dtype == "f32":
            diff = float(np.abs(logits(llm, held) - ours).max())
            check(diff <= 1e-4, f"llama.cpp logits on the f32 GGUF (f32 KV cache) vs ferrolm's: max abs diff {diff:.2e}")
        if dtype != "q8_0":
            g = greedy(llm, prompt, 64)
            check(g == ours_greedy, f"llama.cpp on the {dtype} GGUF: the same 64 greedy ids as ferrolm")
        losses[dtype] = loss(llm, windows)
        del llm
    inc = losses["q8_0"] - losses["f32"]
    n = sum(len(w) - 1 for w in windows)
    print(f"llama.cpp held-out loss ({n} tokens): f32 {losses['f32']:.5f}, f16 {losses['f16']:.5f}, "
          f"q8_0 {losses['q8_0']:.5f} (q8_0 - f32 = {inc:+.5f} nats/token)")
    check(abs(inc) < 0.05, "q8_0 loss within 0.05 nats/token of f32")


def check_init_from(args, work, imported):
    run(args.ferrolm, "tokenizer", "encode", "--tokenizer", work / "tok", "--input", work / "other.txt",
        "--output", work / "other.npy")
    base = json.loads(run(args.ferrolm, "eval", "--checkpoint", imported, "--data", work / "other.npy",
                          "--max-windows", "64", "--json", capture=True))["loss"]
    ft = work / "ft"
    run(args.ferrolm, "train", "--init-from", imported, "--train", work / "other.npy", "--valid", work / "other.npy",
        "--steps", "30", "--batch-size", "8", "--lr", "3e-4", "--set", "schedule.warmup_steps=0",
        "--set", "logging.every=1", "--eval-every", "30", "--set", "eval.batches=8", "--checkpoint-every", "30",
        "--run-dir", ft, "--no-progress")
    recs = [json.loads(l) for l in (ft / "metrics.jsonl").read_text().splitlines() if l.strip()]
    first = next(r["train_loss"] for r in recs if r.get("train_loss") is not None)
    last_val = [r["val_loss"] for r in recs if r.get("val_loss") is not None][-1]
    scratch = math.log(imported_vocab(imported))
    print(f"init-from: imported model's loss on the new text {base:.4f}; fine-tuning step 1 loss {first:.4f}, "
          f"after 30 steps val {last_val:.4f} (a fresh model starts near ln(vocab) = {scratch:.2f})")
    check(abs(first - base) < 0.25 * base and first < 0.8 * scratch,
          "fine-tuning starts from the imported model's loss, not from scratch")
    check(last_val < base, "and lowers it on the new text")


def imported_vocab(ckpt):
    st = json.loads(next(Path(ckpt).glob("step-*/state.json")).read_text())
    return st["model"]["vocab_size"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ferrolm", default=str(ROOT / "target/release/ferrolm"))
    ap.add_argument("--probe", default=str(ROOT / "target/release/examples/probe"))
    ap.add_argument("--keep", help="work in this directory and keep it")
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    args.ferrolm, args.probe = Path(args.ferrolm).resolve(), Path(args.probe).resolve()
    work = Path(args.keep or tempfile.mkdtemp(prefix="check_interop."))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    corpus(args.ferrolm, work)
    run(args.ferrolm, "tokenizer", "train", "--input", work / "train.txt", "--vocab-size", "1024",
        "--special-token", "<|endoftext|>", "--out", work / "tok")
    ferrolm_ids(args.ferrolm, work, "train")
    valid = ferrolm_ids(args.ferrolm, work, "valid")
    vocab = 1024
    run(args.ferrolm, "train", "--train", work / "train.npy", "--valid", work / "valid.npy", "--tokenizer", work / "tok",
        "--set", f"model.vocab_size={vocab}", "--set", "model.d_model=64", "--set", "model.n_heads=4",
        "--set", "model.d_ff=192", "--set", "model.n_layers=2", "--set", "model.context_length=256",
        "--set", "data.batch_size=8", "--set", "eval.batches=4", "--set", "schedule.warmup_steps=20", "--lr", "3e-3",
        "--steps", args.steps, "--eval-every", args.steps, "--checkpoint-every", args.steps,
        "--run-dir", work / "run", "--no-progress")
    ckpt = max((work / "run/checkpoints").glob("step-*"))
    held = [int(x) for x in valid[1000:1256]]
    prompt = [int(x) for x in valid[2000:2032]]
    hf, model, ours = check_hf(args, work, ckpt, held, prompt, vocab)
    imported = check_import(args, work, hf, model, ours, held, vocab)
    tokj = json.loads((hf / "tokenizer.json").read_text())
    paths = gguf_checks(args, work, ckpt, tokj)
    windows = [[int(x) for x in valid[i: i + 256]] for i in range(3000, 3000 + 16 * 256, 256)]
    llama_cpp_checks(paths, prompt, held, ours, probe_greedy(args.probe, ckpt, prompt, 64), windows)
    check_init_from(args, work, imported)
    print(f"check_interop: {time.time() - t0:.0f} s, work directory {work}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"interop: {PASSED[0]} passed, {len(FAILURES)} failed")
    if FAILURES:
        print("FAILED: " + "; ".join(FAILURES))
        sys.exit(1)


if __name__ == "__main__":
    main()
