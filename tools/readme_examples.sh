#!/usr/bin/env bash
# Runs the README's "step by step" commands on a small corpus made by `ferrolm quickstart
# --corpus-only`, so the README's examples stay true. CI runs it; it takes about a minute.
# Usage: tools/readme_examples.sh [path/to/ferrolm]
set -euo pipefail
ferrolm=$(realpath "${1:-target/release/ferrolm}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

"$ferrolm" quickstart --corpus-only all.txt --corpus-mb 1
n=$(wc -l < all.txt)
head -n $((n * 9 / 10)) all.txt > train.txt
tail -n +$((n * 9 / 10 + 1)) all.txt > valid.txt

"$ferrolm" tokenizer train --input train.txt --vocab-size 1024 --special-token '<|endoftext|>' --out tok
"$ferrolm" tokenizer encode --tokenizer tok --input train.txt --output train.npy
"$ferrolm" tokenizer encode --tokenizer tok --input valid.txt --output valid.npy
"$ferrolm" tokenizer info --tokenizer tok --text "Once upon a time"

"$ferrolm" train --print-config > run.toml
# The README trains the tiny preset for 2000 steps; here a smaller model for a few steps, stopped
# half way and resumed, which is the same code path.
small=(--set model.vocab_size=1024 --set model.d_model=64 --set model.n_heads=4 --set model.d_ff=172
       --set model.context_length=64 --set data.batch_size=8 --set eval.every=10 --set eval.batches=2
       --set schedule.warmup_steps=5 --set schedule.cosine_steps=20)
"$ferrolm" train --config run.toml --train train.npy --valid valid.npy --tokenizer tok "${small[@]}" \
    --steps 10 --checkpoint-every 10 --run-dir runs/a --no-progress
# continue the stopped run to step 20 (the schedule is fixed at 20 steps, so this is the same
# run as one of 20 steps)
"$ferrolm" train --run-dir runs/a --resume --steps 20 --no-progress
grep -q '"step":20' runs/a/metrics.jsonl || { echo "resume did not reach step 20" >&2; exit 1; }
# extend the finished run past its schedule (the extra steps run at schedule.min_lr)
"$ferrolm" train --run-dir runs/a --resume --steps 24 --extend --no-progress
grep -q '"step":24' runs/a/metrics.jsonl || { echo "--extend did not reach step 24" >&2; exit 1; }
# the same run in mixed precision
"$ferrolm" train --config run.toml --train train.npy --valid valid.npy --tokenizer tok "${small[@]}" \
    --steps 20 --run-dir runs/bf16 --precision bf16 --no-progress
grep -q '"step":20' runs/bf16/metrics.jsonl || { echo "the bf16 run did not reach step 20" >&2; exit 1; }

# by time (a fraction of a minute here) and by tokens; then the listing and the overlay
"$ferrolm" train --train train.npy --valid valid.npy --tokenizer tok "${small[@]}" --minutes 0.05 \
    --run-dir runs/b --no-progress
grep -q '^max_minutes = 0.05$' runs/b/config.toml || { echo "no time budget recorded" >&2; exit 1; }
"$ferrolm" train --train train.npy --tokenizer tok "${small[@]}" --tokens 5120 --run-dir runs/c --no-progress
grep -q '"step":10,' runs/c/metrics.jsonl || { echo "--tokens 5120 did not give 10 steps" >&2; exit 1; }
"$ferrolm" runs runs | tee runs.txt
grep -q "runs/a .*finished" runs.txt || { echo "runs/a not listed as finished" >&2; exit 1; }
"$ferrolm" runs --compare runs/a runs/b --out ab.svg
test -s ab.svg || { echo "no comparison plot" >&2; exit 1; }

"$ferrolm" generate --checkpoint runs/a --prompt "Once upon a time" --max-tokens 32 --temperature 0.8 --top-p 0.9 --seed 1
"$ferrolm" generate --checkpoint runs/a --prompt "Once upon a time" --max-tokens 32 --precision bf16
"$ferrolm" eval --checkpoint runs/a --data valid.npy --max-windows 16
# "Use your model elsewhere": export to HF and GGUF, import back, generate, fine-tune
"$ferrolm" export --checkpoint runs/a --format hf --out my-model
"$ferrolm" export --checkpoint runs/a --format gguf --out my-model.gguf --dtype q8_0
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json \
         special_tokens_map.json README.md; do
    test -s "my-model/$f" || { echo "export: missing my-model/$f" >&2; exit 1; }
done
"$ferrolm" import --from my-model --out runs/imported
"$ferrolm" generate --checkpoint runs/imported --prompt "Once upon a time" --max-tokens 16
"$ferrolm" train --init-from runs/imported --train train.npy --valid valid.npy --steps 4 --run-dir runs/ft \
    --set data.batch_size=4 --set eval.batches=2 --no-progress
grep -q '"step":4' runs/ft/metrics.jsonl || { echo "the fine-tuning run did not reach step 4" >&2; exit 1; }
if python3 -c 'import transformers, torch' 2>/dev/null; then
    python3 -c 'from transformers import AutoModelForCausalLM as M, AutoTokenizer as T
tok, model = T.from_pretrained("my-model"), M.from_pretrained("my-model")
print(tok.decode(model.generate(**tok("Once upon a time", return_tensors="pt"), max_new_tokens=40)[0]))'
else
    echo "(transformers not installed: skipped the Python example of \"Use your model elsewhere\")"
fi
# serve it (README "Serve your model"): a completion, a stream, then Ctrl-C drains and exits 0
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ferrolm" serve --checkpoint runs/a --port "$port" &
server=$!
for _ in $(seq 100); do curl -sf "localhost:$port/health" > /dev/null && break; sleep 0.2; done
curl -sf "localhost:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "Once upon a time", "max_tokens": 64, "temperature": 0.8, "top_p": 0.9, "seed": 1}' \
    | grep -q '"finish_reason"' || { echo "serve: no completion" >&2; exit 1; }
curl -sfN "localhost:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "Once upon a time", "max_tokens": 64, "stream": true}' \
    | grep -q '^data: \[DONE\]' || { echo "serve: no [DONE]" >&2; exit 1; }
kill -INT "$server"
wait "$server"
# watch the runs (README "Watch your runs"): a run serving its page while it trains, then the
# page, the runs list, a run's metrics, no model
"$ferrolm" train --config run.toml --train train.npy --valid valid.npy --tokenizer tok "${small[@]}" \
    --steps 4 --run-dir runs/d --no-progress --serve-dashboard 0 2> dash.txt
grep -q '^dashboard: http://127.0.0.1:[0-9]*/?run=d ' dash.txt && grep -q 'dashboard stopped' dash.txt \
    || { cat dash.txt; echo "train --serve-dashboard: no dashboard" >&2; exit 1; }
"$ferrolm" serve --runs runs --port "$port" &
server=$!
for _ in $(seq 100); do curl -s "localhost:$port/api/info" > /dev/null && break; sleep 0.2; done
curl -sf "localhost:$port/" | grep -q 'app.js' || { echo "dashboard: no page" >&2; exit 1; }
curl -sf "localhost:$port/api/runs" | grep -q '"name":"a"' || { echo "dashboard: run a not listed" >&2; exit 1; }
curl -sf "localhost:$port/api/runs/a/metrics?after=0" | grep -q '"train_loss"' || { echo "dashboard: no metrics" >&2; exit 1; }
kill -INT "$server"
wait "$server"
# the per-kernel breakdown of a (very short) benchmark step
"$ferrolm" --threads 2 bench train --preset tiny --batch 1 --seq 16 --steps 2 --warmup 1 --breakdown > bench.txt
grep -q "fwd matmul head" bench.txt && grep -q "AdamW" bench.txt || { cat bench.txt; echo "no breakdown" >&2; exit 1; }
for f in runs/a/config.toml runs/a/metrics.jsonl runs/a/loss.svg; do
    test -s "$f" || { echo "missing $f" >&2; exit 1; }
done
echo "README examples: ok"
