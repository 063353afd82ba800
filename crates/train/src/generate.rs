//! Text generation with the KV cache: feed the prompt once, then one token at a time, sampling
//! with temperature / top-p from a seeded RNG, stopping at the end-of-text token.

use anyhow::{bail, Result};
use ferrolm_nn::model::{KvCache, Model};
use ferrolm_nn::sample::{sample, SamplingConfig};
use ferrolm_nn::Rng;

/// How to generate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Stop after this many new tokens.
    pub max_tokens: usize,
    /// 0: greedy.
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 disables top-p.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_tokens: 256,
            temperature: 0.8,
            top_p: 0.9,
            seed: 1,
        }
    }
}

/// What came out.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// The new tokens (the end-of-text token not included).
    pub tokens: Vec<u32>,
    /// True when generation stopped at the end-of-text token.
    pub stopped_at_eot: bool,
}

/// Generates up to `cfg.max_tokens` tokens after `prompt`, calling `on_token` with each as it is
/// drawn (to stream it). Stops at `eot` if given. When the context fills, the cache is rebuilt from
/// the last half of the context (a sliding window), so generation can run past context_length.
/// An empty prompt needs `eot` (it starts the text, as at a document boundary). The weights are
/// read in `model.precision`, as in training (with `Precision::Bf16` a bf16 copy taken once per
/// cache: half the bytes read per token, logits within about 1% of f32).
pub fn generate_tokens(
    model: &Model,
    prompt: &[u32],
    cfg: &GenerateConfig,
    eot: Option<u32>,
    on_token: &mut dyn FnMut(u32) -> Result<()>,
) -> Result<Generated> {
    let c = &model.config;
    let ctx = c.context_length;
    let vocab = c.vocab_size;
    let temperature_ok = cfg.temperature >= 0.0;
    let top_p_ok = cfg.top_p > 0.0 && cfg.top_p <= 1.0;
    if !temperature_ok || !top_p_ok {
        bail!(
            "temperature must be ≥ 0 and top-p in (0, 1], got {} and {}",
            cfg.temperature,
            cfg.top_p
        );
    }
    let mut history: Vec<u32> = if prompt.is_empty() {
        match eot {
            Some(e) => vec![e],
            None => bail!("an empty prompt needs an end-of-text token to start from"),
        }
    } else {
        prompt.to_vec()
    };
    if let Some((pos, &id)) = history.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
        bail!("prompt token {id} at position {pos} is outside the model's vocabulary (size {vocab})");
    }
    // Keep the prompt within the context, leaving room to generate.
    if history.len() >= ctx {
        let keep = (ctx / 2).max(1);
        history.drain(..history.len() - keep);
    }
    let mut rng = Rng::new(cfg.seed);
    let scfg = SamplingConfig {
        temperature: cfg.temperature,
        top_p: cfg.top_p,
    };
    let mut scratch = Vec::new();
    let mut logits = vec![0.0f32; vocab];
    let mut cache = KvCache::new(c, 1, ctx);
    model.forward_infer(&mut cache, &history, &mut logits)?;
    let mut out = Generated {
        tokens: Vec::new(),
        stopped_at_eot: false,
    };
    for _ in 0..cfg.max_tokens {
        // Greedy after a decode step: its argmax came with the LM head (the same as sample's).
        let next = match cache.last_argmax() {
            Some(t) if cfg.temperature <= 0.0 => t,
            _ => sample(&logits, scfg, &mut rng, &mut scratch),
        };
        if Some(next) == eot {
            out.stopped_at_eot = true;
            break;
        }
        on_token(next)?;
        out.tokens.push(next);
        history.push(next);
        if out.tokens.len() == cfg.max_tokens {
            break;
        }
        if cache.len >= ctx {
            // Slide: restart the cache from the most recent half of the context.
            let keep = (ctx / 2).max(1);
            let tail = history[history.len() - keep..].to_vec();
            cache = KvCache::new(c, 1, ctx);
            model.forward_infer(&mut cache, &tail, &mut logits)?;
        } else {
            model.forward_infer(&mut cache, &[next], &mut logits)?;
        }
    }
    Ok(out)
}

/// Turns a stream of token bytes into text pieces, holding back an incomplete UTF-8 sequence
/// until its continuation arrives (a multi-byte character can span tokens).
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes; returns the text now complete (invalid bytes become U+FFFD).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..good]).expect("valid prefix"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..good + bad);
                        }
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// The rest at the end of the stream (an incomplete sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

pub use ferrolm_tokenizer::END_OF_TEXT;

/// What `generate_text` produced.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedText {
    /// The new text (the prompt not included).
    pub text: String,
    pub tokens: Vec<u32>,
    pub stopped_at_eot: bool,
}

/// Encodes `prompt`, generates with the KV cache and calls `on_text` with each new piece of text
/// as soon as it forms complete UTF-8 (for streaming to a terminal). Stops at `<|endoftext|>` when
/// the tokenizer has it. The weights are read in `model.precision`.
pub fn generate_text(
    model: &Model,
    tokenizer: &ferrolm_tokenizer::Tokenizer,
    prompt: &str,
    cfg: &GenerateConfig,
    on_text: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<GeneratedText> {
    if tokenizer.vocab_size() > model.config.vocab_size {
        bail!(
            "the tokenizer has {} tokens but the model only {}: they do not belong together",
            tokenizer.vocab_size(),
            model.config.vocab_size
        );
    }
    let ids = tokenizer.encode(prompt);
    let eot = tokenizer.token_to_id(END_OF_TEXT);
    let mut stream = Utf8Stream::default();
    let mut text = String::new();
    let out = generate_tokens(model, &ids, cfg, eot, &mut |t| {
        // Ids the tokenizer lacks (a model vocab larger than the tokenizer's) decode to nothing.
        let piece = stream.push(tokenizer.id_to_bytes(t).unwrap_or(&[]));
        if !piece.is_empty() {
            on_text(&piece)?;
            text.push_str(&piece);
        }
        Ok(())
    })?;
    let rest = stream.finish();
    if !rest.is_empty() {
        on_text(&rest)?;
        text.push_str(&rest);
    }
    Ok(GeneratedText {
        text,
        tokens: out.tokens,
        stopped_at_eot: out.stopped_at_eot,
    })
}

/// The tokenizer stored with a checkpoint (its `tokenizer/` copy), or an error that says how to
/// supply one.
pub fn checkpoint_tokenizer(checkpoint_dir: &std::path::Path) -> Result<ferrolm_tokenizer::Tokenizer> {
    let dir = checkpoint_dir.join(crate::checkpoint::TOKENIZER_DIR);
    if !dir.is_dir() {
        bail!(
            "checkpoint {} has no tokenizer copy (the run had no data.tokenizer); pass --tokenizer DIR",
            checkpoint_dir.display()
        );
    }
    ferrolm_tokenizer::Tokenizer::from_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolm_nn::{ModelConfig, Precision};

    #[test]
    fn bf16_generation_is_deterministic_and_slides_past_the_context() {
        let c = ModelConfig {
            vocab_size: 50,
            context_length: 16,
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            d_ff: 48,
            ..ModelConfig::tiny()
        };
        let mut model = Model::new(c, 3).unwrap();
        let cfg = GenerateConfig {
            max_tokens: 40,
            temperature: 0.8,
            top_p: 0.9,
            seed: 5,
        };
        model.precision = Precision::Bf16;
        let run = |model: &Model| generate_tokens(model, &[1, 2, 3], &cfg, None, &mut |_| Ok(())).unwrap();
        let (a, b) = (run(&model), run(&model));
        assert_eq!(a, b);
        assert_eq!(a.tokens.len(), 40);
        assert!(a.tokens.iter().all(|&t| t < 50));
        // Greedy: the first token comes from the prompt's logits, whose bf16 error (~1%) rarely
        // flips the argmax of a random model; the f32 run must give a valid sequence too.
        let greedy = GenerateConfig {
            temperature: 0.0,
            ..cfg
        };
        model.precision = Precision::F32;
        let f = generate_tokens(&model, &[1, 2, 3], &greedy, None, &mut |_| Ok(())).unwrap();
        assert_eq!(f.tokens.len(), 40);
    }
}
