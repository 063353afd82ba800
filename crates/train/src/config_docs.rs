//! One-line explanations of every run-config key, and the commented TOML that `--print-config`
//! prints (each key under its explanation).

/// What a section holds.
pub fn section_doc(section: &str) -> Option<&'static str> {
    Some(match section {
        "run" => "The run: where it writes, how long it trains, its seed and precision.",
        "model" => "The model's shape (a preset: `--preset tiny|small` or `preset = \"small\"` here).",
        "optimizer" => "AdamW and gradient clipping.",
        "schedule" => "Learning rate: linear warmup to optimizer.lr, then cosine decay to min_lr.",
        "data" => "Token files, the tokenizer and how batches are drawn.",
        "eval" => "Validation loss during training.",
        "logging" => "metrics.jsonl, progress output and the loss plot.",
        "checkpoint" => "When checkpoints are saved and how many are kept.",
        _ => return None,
    })
}

/// What `section.key` means, in one line.
pub fn key_doc(key: &str) -> Option<&'static str> {
    Some(match key {
        "run.dir" => "Directory for config.toml, metrics.jsonl, loss.svg and checkpoints/.",
        "run.max_steps" => "Optimizer steps to train (set from max_minutes or max_tokens when one is given).",
        "run.max_minutes" => "Train for about this many minutes instead (0: off); the steps are estimated from the first steps' speed, then fixed.",
        "run.max_tokens" => "Train on this many tokens instead (0: off); max_steps = max_tokens / tokens per step, rounded up.",
        "run.seed" => "Seed of the parameter initialization.",
        "run.precision" => {
            "Matmul precision: \"f32\", or \"bf16\" (bf16 operands; f32 sums, weights and optimizer state)."
        }
        "model.vocab_size" => {
            "Vocabulary size; 0: the tokenizer's (data.tokenizer). Every token id must be below it."
        }
        "model.context_length" => "Longest sequence the model reads, in tokens.",
        "model.d_model" => "Width of the residual stream.",
        "model.n_layers" => "Number of Transformer blocks.",
        "model.n_heads" => {
            "Attention heads; d_model must be divisible by it (and the head size even for RoPE)."
        }
        "model.d_ff" => "Hidden width of the feed-forward network.",
        "model.rope_theta" => "RoPE base frequency.",
        "model.norm" => {
            "\"pre\" (RMSNorm before attention and FFN), \"post\" (after each residual add) or \"none\"."
        }
        "model.position" => "\"rope\" (rotary position embeddings) or \"none\".",
        "model.ffn" => "\"swiglu\" (W2(SiLU(W1 x) * W3 x)) or \"silu\" (W2 SiLU(W1 x)).",
        "optimizer.lr" => "Peak learning rate, reached at the end of warmup; >= 0.",
        "optimizer.beta1" => "AdamW decay of the gradient mean, in [0, 1).",
        "optimizer.beta2" => "AdamW decay of the squared-gradient mean, in [0, 1).",
        "optimizer.eps" => "AdamW's term added to the denominator, > 0.",
        "optimizer.weight_decay" => "Decoupled (AdamW) weight decay, >= 0.",
        "optimizer.no_decay_norms" => {
            "true: RMSNorm gains are not decayed; false: every parameter is (as the reference)."
        }
        "optimizer.grad_clip" => "Clip the global gradient L2 norm to this; 0: no clipping.",
        "schedule.warmup_steps" => "Steps of linear warmup from 0 to optimizer.lr.",
        "schedule.cosine_steps" => {
            "Step at which the cosine reaches min_lr (constant after it); 0: run.max_steps."
        }
        "schedule.min_lr" => "Learning rate at the end of the cosine, in [0, optimizer.lr].",
        "data.train" => "Training tokens: a .npy file of <u2 or <u4 ids (`ferrolm tokenizer encode`).",
        "data.valid" => "Validation tokens (.npy); \"\": no validation.",
        "data.tokenizer" => "Tokenizer directory, copied into every checkpoint; \"\": none.",
        "data.batch_size" => "Sequences per micro-batch.",
        "data.grad_accum" => {
            "Micro-batches per optimizer step (tokens per step: batch_size * grad_accum * seq_len)."
        }
        "data.seq_len" => "Tokens per training window; 0: model.context_length.",
        "data.sampling" => {
            "\"random\" (uniform window starts) or \"sequential\" (windows in order, wrapping)."
        }
        "data.seed" => "Seed of the batch sampler.",
        "eval.every" => "Evaluate every N steps; 0: about 20 times per run. Always at the start and the end.",
        "eval.batches" => {
            "Validation batches (of data.batch_size windows) per evaluation; 0: the whole file."
        }
        "logging.every" => "Write a metrics.jsonl line every N steps (evaluations are always written).",
        "logging.progress" => "Show progress: a bar on a terminal, plain lines when stderr is not one.",
        "logging.progress_seconds" => "Seconds between plain progress lines (0: one per metrics line).",
        "logging.plot" => "Draw loss.svg at the end of the run.",
        "checkpoint.every" => "Save a checkpoint every N steps; 0: only at the end.",
        "checkpoint.keep_last" => {
            "Keep the newest K checkpoints (plus the best by validation loss, and step 0 if saved); >= 1."
        }
        "checkpoint.save_step0" => "Also save the initialization as checkpoint step 0.",
        _ => return None,
    })
}

/// Adds a comment line above each section header and each key of `toml` (as `toml::to_string`
/// writes a config: `[section]` headers and `key = value` lines).
pub fn commented(toml: &str) -> String {
    let mut out = String::with_capacity(toml.len() * 3);
    let mut section = String::new();
    for line in toml.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_string();
            if let Some(doc) = section_doc(name) {
                out.push_str(&format!("# {doc}\n"));
            }
        } else if let Some((key, _)) = t.split_once(" = ") {
            if let Some(doc) = key_doc(&format!("{section}.{}", key.trim())) {
                out.push_str(&format!("# {doc}\n"));
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
