//! Tokenizer files: GPT-2's `vocab.json` + `merges.txt` (byte-to-unicode alphabet) and Hugging Face
//! `tokenizer.json` (BPE model, ByteLevel pre-tokenizer and decoder, special tokens as added tokens).

use crate::byte_unicode::{bytes_to_unicode, unicode_to_bytes};
use crate::error::{Result, TokenizerError};
use crate::tokenizer::{BuildError, Tokenizer};
use crate::{Merges, Vocab};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A model field and whether its value is supported.
type FieldCheck = (&'static str, fn(&Value) -> bool);

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| TokenizerError::InvalidUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to() as u64,
    })
}

/// Byte offset of 1-based (line, column) in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

fn parse_json(path: &Path, text: &str, what: &'static str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        TokenizerError::corrupt(path, what, offset_of(text, e.line(), e.column()), e.to_string())
    })
}

/// Byte offset of a JSON string `key` in `text` (0 when not found verbatim).
fn key_offset(text: &str, key: &str) -> usize {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    text.find(&quoted).unwrap_or(0)
}

/// Token bytes by id from a `{token: id}` map in GPT-2's alphabet; ids must be 0..n without gaps.
fn vocab_from_map(
    path: &Path,
    text: &str,
    map: &serde_json::Map<String, Value>,
    what: &'static str,
    raw_ok: &[String],
) -> Result<Vocab> {
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; map.len()];
    for (key, value) in map {
        let bad = |message: String| TokenizerError::corrupt(path, what, key_offset(text, key), message);
        let id = value
            .as_u64()
            .ok_or_else(|| bad(format!("the id of {key:?} is {value}, not an integer")))?;
        let bytes = match unicode_to_bytes(key) {
            Ok(bytes) => bytes,
            // HF keeps added tokens in the model vocab as they are (e.g. with a raw space).
            Err(_) if raw_ok.contains(key) => key.as_bytes().to_vec(),
            Err(i) => {
                return Err(bad(format!(
                    "token {key:?} has a character (#{i}) outside GPT-2's byte alphabet"
                )))
            }
        };
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            bad(format!(
                "id {id} of {key:?} is outside 0..{} (ids must be dense)",
                map.len()
            ))
        })?;
        if slot.is_some() {
            return Err(bad(format!("id {id} is used twice")));
        }
        *slot = Some(bytes);
    }
    Ok(tokens
        .into_iter()
        .map(|t| t.expect("dense ids: n distinct ids below n"))
        .collect())
}

/// Reads GPT-2's `vocab.json`.
pub fn read_vocab_json(path: &Path) -> Result<Vocab> {
    let text = read_text(path)?;
    match parse_json(path, &text, "vocab.json")? {
        Value::Object(map) => vocab_from_map(path, &text, &map, "vocab.json", &[]),
        _ => Err(TokenizerError::corrupt(
            path,
            "vocab.json",
            0,
            "expected a JSON object {token: id}",
        )),
    }
}

/// Reads GPT-2's `merges.txt` (an optional `#version` line, then `left right` per line); returns the
/// merges and the byte offset of each line.
pub fn read_merges_txt(path: &Path) -> Result<(Merges, Vec<usize>)> {
    let text = read_text(path)?;
    let mut merges = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = 0;
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let here = offset;
        offset += raw.len();
        if line.is_empty() || (n == 0 && line.starts_with("#version")) {
            continue;
        }
        let bad = |message: String| TokenizerError::corrupt(path, "merges.txt", here, message);
        let (a, b) = line
            .split_once(' ')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '))
            .ok_or_else(|| {
                bad(format!(
                    "line {} is {line:?}, expected two tokens separated by one space",
                    n + 1
                ))
            })?;
        let decode = |t: &str| {
            unicode_to_bytes(t).map_err(|i| {
                bad(format!(
                    "{t:?} has a character (#{i}) outside GPT-2's byte alphabet"
                ))
            })
        };
        merges.push((decode(a)?, decode(b)?));
        offsets.push(here);
    }
    Ok((merges, offsets))
}

fn build_error(path: &Path, what: &'static str, offsets: &[usize], e: BuildError) -> TokenizerError {
    let offset = e.merge.and_then(|i| offsets.get(i).copied()).unwrap_or(0);
    TokenizerError::corrupt(path, what, offset, e.message)
}

impl Tokenizer {
    /// Loads GPT-2 style `vocab.json` + `merges.txt` with the given special tokens.
    pub fn from_gpt2_files(
        vocab_json: impl AsRef<Path>,
        merges_txt: impl AsRef<Path>,
        special_tokens: &[String],
    ) -> Result<Self> {
        crate::tokenizer::check_specials(special_tokens)?;
        let vocab = read_vocab_json(vocab_json.as_ref())?;
        let (merges, offsets) = read_merges_txt(merges_txt.as_ref())?;
        Tokenizer::build(vocab, &merges, special_tokens)
            .map_err(|e| build_error(merges_txt.as_ref(), "merges.txt", &offsets, e))
    }

    /// Loads a directory written by [`Tokenizer::save`]: `tokenizer.json` (which holds the special
    /// tokens) when present, else `vocab.json` + `merges.txt` without special tokens.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_tokenizer_json(json);
        }
        let vocab = dir.join("vocab.json");
        if !vocab.exists() {
            return Err(TokenizerError::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no tokenizer.json or vocab.json here; train one with `ferrolm tokenizer train`",
                ),
            ));
        }
        Self::from_gpt2_files(vocab, dir.join("merges.txt"), &[])
    }

    /// Loads a Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2 style).
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_text(path)?;
        let root = parse_json(path, &text, "tokenizer.json")?;
        let bad = |key: &str, message: String| {
            TokenizerError::corrupt(path, "tokenizer.json", key_offset(&text, key), message)
        };
        let model = root
            .get("model")
            .ok_or_else(|| bad("", "no \"model\" object".into()))?;
        let model_type = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
        if model_type != "BPE" {
            return Err(bad(
                "type",
                format!("model type {model_type:?} is not supported (only byte-level BPE)"),
            ));
        }
        let checks: [FieldCheck; 5] = [
            ("continuing_subword_prefix", |v: &Value| {
                v.is_null() || v.as_str() == Some("")
            }),
            ("end_of_word_suffix", |v: &Value| {
                v.is_null() || v.as_str() == Some("")
            }),
            ("byte_fallback", |v: &Value| {
                v.is_null() || v.as_bool() == Some(false)
            }),
            ("ignore_merges", |v: &Value| {
                v.is_null() || v.as_bool() == Some(false)
            }),
            ("dropout", |v: &Value| v.is_null() || v.as_f64() == Some(0.0)),
        ];
        for (field, ok) in checks {
            if let Some(v) = model.get(field) {
                if !ok(v) {
                    return Err(bad(field, format!("model.{field} = {v} is not supported")));
                }
            }
        }
        if let Some(n) = root.get("normalizer").filter(|v| !v.is_null()) {
            return Err(bad(
                "normalizer",
                format!("normalizer {n} is not supported (ferrolm does not normalize)"),
            ));
        }
        let pre = root.get("pre_tokenizer").cloned().unwrap_or(Value::Null);
        let byte_level_regex = pre.get("type").and_then(Value::as_str) == Some("ByteLevel")
            && pre.get("use_regex").and_then(Value::as_bool).unwrap_or(true)
            && !pre
                .get("add_prefix_space")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        if !byte_level_regex {
            return Err(bad(
                "pre_tokenizer",
                format!(
                    "pre_tokenizer {pre} is not supported: ferrolm uses ByteLevel with the GPT-2 pattern \
                     (use_regex true, add_prefix_space false)"
                ),
            ));
        }
        let added_contents: Vec<String> = root
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.get("content")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let vocab_map = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("vocab", "model.vocab is not an object {token: id}".into()))?;
        let mut vocab = vocab_from_map(path, &text, vocab_map, "tokenizer.json", &added_contents)?;
        let merges_json = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("merges", "model.merges is not an array".into()))?;
        let mut merges = Vec::with_capacity(merges_json.len());
        for (i, m) in merges_json.iter().enumerate() {
            let pair = match m {
                Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
                Value::Array(v) if v.len() == 2 => match (&v[0], &v[1]) {
                    (Value::String(a), Value::String(b)) => Some((a.clone(), b.clone())),
                    _ => None,
                },
                _ => None,
            };
            let (a, b) =
                pair.ok_or_else(|| bad("merges", format!("merge #{i} is {m}, expected \"a b\" or [a, b]")))?;
            let decode = |t: &str| {
                unicode_to_bytes(t).map_err(|_| {
                    bad(
                        "merges",
                        format!("merge #{i}: {t:?} is outside GPT-2's byte alphabet"),
                    )
                })
            };
            merges.push((decode(&a)?, decode(&b)?));
        }
        let mut specials = Vec::new();
        if let Some(added) = root.get("added_tokens").and_then(Value::as_array) {
            let mut added: Vec<(u64, String)> = added
                .iter()
                .map(|t| {
                    let id = t.get("id").and_then(Value::as_u64);
                    let content = t.get("content").and_then(Value::as_str);
                    match (id, content) {
                        (Some(id), Some(c)) => Ok((id, c.to_string())),
                        _ => Err(bad(
                            "added_tokens",
                            format!("added token {t} lacks an id or content"),
                        )),
                    }
                })
                .collect::<Result<_>>()?;
            added.sort();
            for (id, content) in added {
                // Added tokens live in the model vocab (as their byte-level form) or right after it.
                let in_vocab = vocab.get(id as usize).is_some_and(|t| *t == content.as_bytes())
                    || unicode_to_bytes(&content)
                        .ok()
                        .is_some_and(|b| vocab.get(id as usize) == Some(&b));
                if in_vocab {
                    vocab[id as usize] = content.as_bytes().to_vec();
                } else if id as usize == vocab.len() {
                    vocab.push(content.as_bytes().to_vec());
                } else {
                    return Err(bad(
                        &content,
                        format!("added token {content:?} has id {id}, which is neither its vocab id nor the next free id"),
                    ));
                }
                specials.push(content);
            }
        }
        Tokenizer::build(vocab, &merges, &specials).map_err(|e| bad("merges", e.message))
    }

    /// Writes `vocab.json`, `merges.txt` (GPT-2 format) and `tokenizer.json` (Hugging Face format)
    /// into `dir`, creating it; each file is written to a temporary name and renamed into place.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TokenizerError::io(dir, e))?;
        write_atomic(&dir.join("vocab.json"), self.vocab_json().as_bytes())?;
        write_atomic(&dir.join("merges.txt"), self.merges_txt().as_bytes())?;
        let json = serde_json::to_string_pretty(&self.tokenizer_json()).expect("JSON value serializes");
        write_atomic(&dir.join("tokenizer.json"), json.as_bytes())
    }

    /// Token strings in GPT-2's alphabet by id (special tokens too).
    fn token_strings(&self) -> Vec<String> {
        self.vocab().iter().map(|t| bytes_to_unicode(t)).collect()
    }

    /// `vocab.json` text, ordered by id.
    pub fn vocab_json(&self) -> String {
        let mut out = String::from("{");
        let mut seen = std::collections::HashSet::new();
        for (id, s) in self.token_strings().iter().enumerate() {
            if !seen.insert(s.clone()) {
                continue; // a special token spelled like an ordinary one: JSON keys must be unique
            }
            if id > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "\n  {}: {id}",
                serde_json::to_string(s).expect("string serializes")
            ));
        }
        out.push_str("\n}\n");
        out
    }

    /// `merges.txt` text.
    pub fn merges_txt(&self) -> String {
        let mut out = String::from("#version: 0.2\n");
        for (a, b) in self.merges() {
            out.push_str(&bytes_to_unicode(&a));
            out.push(' ');
            out.push_str(&bytes_to_unicode(&b));
            out.push('\n');
        }
        out
    }

    /// The Hugging Face `tokenizer.json` value.
    pub fn tokenizer_json(&self) -> Value {
        let strings = self.token_strings();
        let mut vocab = serde_json::Map::new();
        for (id, s) in strings.iter().enumerate() {
            vocab.entry(s.clone()).or_insert(json!(id));
        }
        let merges: Vec<String> = self
            .merges()
            .iter()
            .map(|(a, b)| format!("{} {}", bytes_to_unicode(a), bytes_to_unicode(b)))
            .collect();
        let added: Vec<Value> = self
            .special_tokens()
            .iter()
            .map(|(s, id)| {
                json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": true})
            })
            .collect();
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges
            }
        })
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, so a crash never leaves half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| TokenizerError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TokenizerError::io(path, e))
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
