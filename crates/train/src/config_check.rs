//! Reading and checking a run config: [`TrainConfig::from_toml`] / [`TrainConfig::load`], every
//! setting's range ([`TrainConfig::validate`], errors naming the key and the valid range), unknown
//! keys and wrong types in a TOML file, and the line each key is on. (These methods live here,
//! not in `config`, so that `config` holds the plain settings and imports nothing of this.)

use crate::config::{merge, preset, TrainConfig};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A setting out of its range: `key` is `section.key`, `message` says the value and the range.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for FieldError {}

fn field(key: &str, message: String) -> anyhow::Error {
    FieldError {
        key: key.to_string(),
        message,
    }
    .into()
}

/// `value` must lie in the range `lo..hi` (each end open or closed as `range` shows it).
fn check(key: &str, value: f64, ok: bool, range: &str) -> Result<()> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(field(
            key,
            format!("{key} = {value} is out of range: it must be in {range}"),
        ))
    }
}

impl TrainConfig {
    /// Parses a TOML config. Keys it leaves out take the defaults; unknown keys, values of the wrong
    /// type and values out of range are errors that name the line and the key.
    /// `[model] preset = "small"` starts the model section from a preset (vocab_size 0: the
    /// tokenizer's).
    pub fn from_toml(text: &str) -> Result<TrainConfig> {
        let mut user: toml::Table = toml::from_str(text).context("invalid TOML")?;
        let lines = KeyLines::new(text);
        let mut base = TrainConfig::default();
        if let Some(toml::Value::Table(m)) = user.get_mut("model") {
            if let Some(p) = m.remove("preset") {
                let name = p.as_str().unwrap_or_default();
                base.model = preset(name)
                    .map_err(|e| anyhow::anyhow!("{}: model.preset: {e}", lines.at("model.preset")))?;
            }
        }
        let table = toml::Table::try_from(base)?;
        check_keys(&table, &user, &lines)?;
        let mut merged = table;
        merge(&mut merged, user);
        let cfg: TrainConfig = toml::Value::Table(merged).try_into().context("invalid config")?;
        cfg.validate().map_err(|e| lines.locate(e))?;
        Ok(cfg)
    }

    /// Reads a TOML config file (see `from_toml`).
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        TrainConfig::from_toml(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Checks every setting's range and that they fit together; the error names the key and its
    /// valid range (a [`FieldError`]).
    pub fn validate(&self) -> Result<()> {
        validate(self)
    }
}

/// Every range and consistency check of a config (see the module docs).
fn validate(c: &TrainConfig) -> Result<()> {
    if c.run.max_steps == 0 && c.run.max_minutes == 0.0 && c.run.max_tokens == 0 {
        return Err(field(
            "run.max_steps",
            "run.max_steps (--steps) = 0 is out of range: it must be at least 1".into(),
        ));
    }
    let m = c.run.max_minutes;
    check("run.max_minutes", m, m >= 0.0, "[0, inf) (0: off)")?;
    if m > 0.0 && c.run.max_tokens > 0 {
        return Err(field(
            "run.max_minutes",
            "run.max_minutes and run.max_tokens are both set: give one budget".into(),
        ));
    }
    let p = c.logging.progress_seconds;
    check(
        "logging.progress_seconds",
        p,
        p >= 0.0,
        "[0, inf) (0: one line per metrics line)",
    )?;
    let o = &c.optimizer;
    check("optimizer.lr", o.lr, o.lr >= 0.0, "[0, inf)")?;
    check(
        "optimizer.beta1",
        o.beta1,
        (0.0..1.0).contains(&o.beta1),
        "[0, 1)",
    )?;
    check(
        "optimizer.beta2",
        o.beta2,
        (0.0..1.0).contains(&o.beta2),
        "[0, 1)",
    )?;
    check("optimizer.eps", o.eps, o.eps > 0.0, "(0, inf)")?;
    check(
        "optimizer.weight_decay",
        o.weight_decay,
        o.weight_decay >= 0.0,
        "[0, inf)",
    )?;
    check(
        "optimizer.grad_clip",
        o.grad_clip,
        o.grad_clip >= 0.0,
        "[0, inf) (0 disables clipping)",
    )?;
    let min_lr = c.schedule.min_lr;
    let in_range = (0.0..=o.lr).contains(&min_lr);
    check(
        "schedule.min_lr",
        min_lr,
        in_range,
        &format!("[0, optimizer.lr = {}]", o.lr),
    )?;
    // vocab_size 0 means "the tokenizer's" (TrainConfig::resolve fills it in).
    let mut model = c.model.clone();
    model.vocab_size = model.vocab_size.max(1);
    model
        .validate()
        .map_err(|e| field("model", format!("config section [model]: {e}")))?;
    if c.data.seq_len > c.model.context_length {
        return Err(field(
            "data.seq_len",
            format!(
                "data.seq_len = {} exceeds model.context_length = {}: it must be in [0, {}] (0: the context length)",
                c.data.seq_len, c.model.context_length, c.model.context_length
            ),
        ));
    }
    for (key, v) in [
        ("data.batch_size", c.data.batch_size),
        ("data.grad_accum", c.data.grad_accum),
    ] {
        if v == 0 {
            return Err(field(
                key,
                format!("{key} = 0 is out of range: it must be at least 1"),
            ));
        }
    }
    if c.checkpoint.keep_last == 0 {
        return Err(field(
            "checkpoint.keep_last",
            "checkpoint.keep_last = 0 is out of range: it must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The line (1-based) of each `section.key` of a TOML text, for error messages.
pub struct KeyLines {
    lines: BTreeMap<String, usize>,
}

type Spans = BTreeMap<String, toml::Spanned<BTreeMap<String, toml::Spanned<toml::Value>>>>;

impl KeyLines {
    /// Finds the keys of `text`'s sections (none when the text is not a table of tables).
    pub fn new(text: &str) -> KeyLines {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut lines = BTreeMap::new();
        if let Ok(spans) = toml::from_str::<Spans>(text) {
            for (section, keys) in spans {
                lines.insert(section.clone(), line_of(keys.span().start));
                for (key, value) in keys.into_inner() {
                    lines.insert(format!("{section}.{key}"), line_of(value.span().start));
                }
            }
        }
        KeyLines { lines }
    }

    /// The line of `key` (`section.key`, or a section).
    pub fn line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    /// "line N" for an error message that names the key, or the key when its line is unknown.
    pub fn at(&self, key: &str) -> String {
        match self.line(key) {
            Some(n) => format!("line {n}"),
            None => key.to_string(),
        }
    }

    /// Prefixes a [`FieldError`] with the line of its key in the text, when the text sets it.
    pub fn locate(&self, e: anyhow::Error) -> anyhow::Error {
        let line = e.downcast_ref::<FieldError>().and_then(|f| {
            // A section-wide error (the model's shape): the first key of the section the message
            // names, else the section's header.
            let prefix = format!("{}.", f.key);
            let named = self.lines.iter().find(|(k, _)| {
                k.strip_prefix(&prefix)
                    .is_some_and(|field| f.message.contains(field))
            });
            named
                .map(|(_, &n)| n)
                .or_else(|| self.line(&f.key))
                .or_else(|| self.line(f.key.split('.').next()?))
        });
        match line {
            Some(n) => anyhow::anyhow!("line {n}: {e}"),
            None => e,
        }
    }
}

/// Rejects keys of `user` that `defaults` does not have, and values that do not deserialize, each
/// with its line: `defaults` is the default config as a table (every key present).
pub fn check_keys(defaults: &toml::Table, user: &toml::Table, lines: &KeyLines) -> Result<()> {
    let sections: Vec<&str> = defaults.keys().map(|k| k.as_str()).collect();
    for (section, value) in user {
        let Some(known) = defaults.get(section).and_then(|v| v.as_table()) else {
            let what = if value.is_table() {
                format!("unknown section [{section}]")
            } else {
                format!("unknown top-level key {section:?} (settings go in sections)")
            };
            anyhow::bail!(
                "{}: {what}; the sections are {}",
                lines.at(section),
                sections.join(", ")
            );
        };
        let Some(keys) = value.as_table() else {
            anyhow::bail!("{}: {section} must be a section ([{section}])", lines.at(section));
        };
        for (key, v) in keys {
            let name = format!("{section}.{key}");
            if !known.contains_key(key) {
                let valid: Vec<&str> = known.keys().map(|k| k.as_str()).collect();
                anyhow::bail!(
                    "{}: unknown key {name}; the keys of [{section}] are {} (see `ferrolm train --print-config`)",
                    lines.at(&name),
                    valid.join(", ")
                );
            }
            // The key alone on the defaults: a type error is this key's.
            let mut one = defaults.clone();
            let sec = one
                .get_mut(section)
                .and_then(|s| s.as_table_mut())
                .expect("known section");
            let v = match (v, &known[key]) {
                (toml::Value::Integer(i), toml::Value::Float(_)) => toml::Value::Float(*i as f64),
                (v, _) => v.clone(),
            };
            sec.insert(key.clone(), v.clone());
            if let Err(e) = toml::Value::Table(one).try_into::<TrainConfig>() {
                // serde's message without toml's "in `section.key`" line (the key leads already).
                let msg = e.to_string();
                let first = msg.lines().next().unwrap_or_default().trim();
                anyhow::bail!("{}: {name} = {v}: {first}", lines.at(&name));
            }
        }
    }
    Ok(())
}
