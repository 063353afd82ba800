//! One sequence being generated: its KV cache, logits, RNG and text, stepping exactly as
//! `ferrolm_train::generate::generate_tokens` does (same sampling calls in the same order, the
//! same sliding window), so a seed gives the text `ferrolm generate` gives.

use anyhow::{bail, Result};
use ferrolm_nn::model::{BatchDecoder, KvCache, Model};
use ferrolm_nn::sample::{sample, SamplingConfig};
use ferrolm_nn::Rng;
use ferrolm_tokenizer::Tokenizer;
use ferrolm_train::generate::{GenerateConfig, Utf8Stream};

/// What to generate for one choice.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The prompt's tokens (may be empty: then generation starts from the end-of-text token).
    pub prompt: Vec<u32>,
    pub cfg: GenerateConfig,
    /// Generation stops before the first of these strings (it is not returned).
    pub stop: Vec<String>,
    /// The end-of-text token, if the tokenizer has one.
    pub eot: Option<u32>,
}

/// The state of one sequence between steps.
pub struct Sequence {
    cache: KvCache,
    logits: Vec<f32>,
    rng: Rng,
    scratch: Vec<(f32, u32)>,
    history: Vec<u32>,
    tokens: Vec<u32>,
    cfg: GenerateConfig,
    eot: Option<u32>,
    stop: Vec<String>,
    utf8: Utf8Stream,
    /// All text so far, and how much of it has been sent.
    text: String,
    sent: usize,
    /// The token to feed at the next forward (None: the sequence finished).
    pending: Option<u32>,
}

/// What one `advance` produced.
pub struct Advance {
    /// Text to send now.
    pub text: String,
    /// Set when the sequence ended: "stop" or "length".
    pub finished: Option<&'static str>,
}

impl Sequence {
    /// A sequence for `choice` with an empty cache; its prompt is run by `prefill`. `reuse` is a
    /// cache a finished sequence of the same model gave back (`into_cache`): emptied and used
    /// instead of allocating one (a cache of the small preset is 6 MB, and fresh pages cost the
    /// scheduler thread ~2 ms of page faults per request).
    pub fn new(model: &Model, choice: &Choice, reuse: Option<KvCache>) -> Result<Sequence> {
        let c = &model.config;
        let ctx = c.context_length;
        let mut history = if choice.prompt.is_empty() {
            match choice.eot {
                Some(e) => vec![e],
                None => bail!("an empty prompt needs an end-of-text token to start from"),
            }
        } else {
            choice.prompt.clone()
        };
        if history.len() >= ctx {
            let keep = (ctx / 2).max(1);
            history.drain(..history.len() - keep);
        }
        let cache = match reuse {
            Some(mut cache) if cache.batch == 1 && cache.max_len == ctx => {
                cache.reset();
                cache
            }
            _ => KvCache::new(c, 1, ctx),
        };
        let logits = vec![0.0f32; c.vocab_size];
        Ok(Sequence {
            cache,
            logits,
            rng: Rng::new(choice.cfg.seed),
            scratch: Vec::new(),
            history,
            tokens: Vec::new(),
            cfg: choice.cfg,
            eot: choice.eot,
            stop: choice.stop.clone(),
            utf8: Utf8Stream::default(),
            text: String::new(),
            sent: 0,
            pending: None,
        })
    }

    /// Runs the prompts of new sequences through the model together (`BatchDecoder::prefill`:
    /// the logits each gets alone); their logits are then ready to sample. `decoder` lends its
    /// bf16 weight snapshot. On an error no sequence changed.
    pub fn prefill(model: &Model, decoder: &mut BatchDecoder, seqs: &mut [&mut Sequence]) -> Result<()> {
        let mut caches = Vec::with_capacity(seqs.len());
        let mut prompts = Vec::with_capacity(seqs.len());
        let mut logits = Vec::with_capacity(seqs.len());
        for s in seqs.iter_mut() {
            let s: &mut Sequence = s;
            caches.push(&mut s.cache);
            prompts.push(&s.history[..]);
            logits.push(&mut s.logits[..]);
        }
        Ok(decoder.prefill(model, &mut caches, &prompts, &mut logits)?)
    }

    /// The sequence's KV cache, to start another sequence with.
    pub fn into_cache(self) -> KvCache {
        self.cache
    }

    /// Tokens generated so far.
    pub fn completion_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Draws the next token from the current logits, appends its text, and says what to send
    /// and whether the sequence ended. Unless it ended, the token waits in `pending` for the
    /// next forward.
    pub fn advance(&mut self, tokenizer: &Tokenizer) -> Advance {
        self.pending = None;
        if self.tokens.len() >= self.cfg.max_tokens {
            return self.finish("length");
        }
        let scfg = SamplingConfig {
            temperature: self.cfg.temperature,
            top_p: self.cfg.top_p,
        };
        let next = match self.cache.last_argmax() {
            Some(t) if self.cfg.temperature <= 0.0 => t,
            _ => sample(&self.logits, scfg, &mut self.rng, &mut self.scratch),
        };
        if Some(next) == self.eot {
            return self.finish("stop");
        }
        self.tokens.push(next);
        self.history.push(next);
        let piece = self.utf8.push(tokenizer.id_to_bytes(next).unwrap_or(&[]));
        self.text.push_str(&piece);
        if let Some(at) = self.stop_at() {
            // Bytes still pending in the UTF-8 stream come after the stop string: dropped.
            self.text.truncate(at);
            return self.flush("stop");
        }
        if self.tokens.len() >= self.cfg.max_tokens {
            return self.finish("length");
        }
        self.pending = Some(next);
        let safe = (self.text.len() - self.held_back()).max(self.sent);
        let text = self.text[self.sent..safe].to_string();
        self.sent = safe;
        Advance { text, finished: None }
    }

    /// Ends the sequence at the end-of-text token or max_tokens: adds an incomplete UTF-8 tail
    /// (as U+FFFD, as `generate` does), then sends the held-back text (up to a stop string if the
    /// tail completes one).
    fn finish(&mut self, reason: &'static str) -> Advance {
        let mut reason = reason;
        let rest = self.utf8.finish();
        if !rest.is_empty() {
            self.text.push_str(&rest);
            if let Some(at) = self.stop_at() {
                self.text.truncate(at);
                reason = "stop";
            }
        }
        self.flush(reason)
    }

    /// Ends the sequence: sends the text not sent yet.
    fn flush(&mut self, reason: &'static str) -> Advance {
        let text = self.text[self.sent.min(self.text.len())..].to_string();
        self.sent = self.text.len();
        Advance {
            text,
            finished: Some(reason),
        }
    }

    /// The byte offset of the earliest stop string in the text, if any.
    fn stop_at(&self) -> Option<usize> {
        self.stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
    }

    /// How many bytes at the end of the text could begin a stop string (held back until known).
    fn held_back(&self) -> usize {
        let t = self.text.as_bytes();
        let mut held = 0;
        for s in self.stop.iter().map(|s| s.as_bytes()) {
            for k in (1..s.len().min(t.len() + 1)).rev() {
                if k > held && t.ends_with(&s[..k]) {
                    held = k;
                    break;
                }
            }
        }
        // Keep whole characters: move the cut back to a char boundary.
        let mut cut = t.len() - held;
        while !self.text.is_char_boundary(cut) {
            cut -= 1;
        }
        t.len() - cut
    }

    /// Runs every sequence's pending token through the model: the ones with room in their cache
    /// together as one batched decode step, a full one alone (it slides: the cache restarts from
    /// the most recent half of the context, as `generate` does).
    pub fn forward_all(model: &Model, decoder: &mut BatchDecoder, seqs: &mut [&mut Sequence]) -> Result<()> {
        let ctx = model.config.context_length;
        let mut batch: Vec<&mut Sequence> = Vec::with_capacity(seqs.len());
        for s in seqs.iter_mut() {
            let Some(_) = s.pending else { continue };
            if s.cache.len >= ctx {
                let keep = (ctx / 2).max(1);
                let tail = s.history[s.history.len() - keep..].to_vec();
                s.cache.reset();
                decoder.forward_infer(model, &mut s.cache, &tail, &mut s.logits)?;
            } else {
                batch.push(s);
            }
        }
        if batch.len() == 1 {
            // One sequence: the batch-1 decode engine, exactly as `generate` runs it.
            let s = &mut batch[0];
            let t = s.pending.expect("pending");
            return Ok(decoder.forward_infer(model, &mut s.cache, &[t], &mut s.logits)?);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let tokens: Vec<u32> = batch.iter().map(|s| s.pending.expect("pending")).collect();
        let mut caches: Vec<&mut KvCache> = Vec::with_capacity(batch.len());
        let mut logits: Vec<&mut [f32]> = Vec::with_capacity(batch.len());
        for s in batch.iter_mut() {
            let s: &mut Sequence = s;
            caches.push(&mut s.cache);
            logits.push(&mut s.logits);
        }
        decoder.step(model, &mut caches, &tokens, &mut logits)?;
        Ok(())
    }
}
