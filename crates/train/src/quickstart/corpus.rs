//! The quickstart's text: the user's file or the built-in stories, its train/valid split, and
//! the prompts of the sample generations.

use super::stories;
use super::Options;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Splits `text` into (train, valid). Text with `<|endoftext|>` separators is split by documents:
/// the last `valid_fraction` of them (at least one) go to valid, each split written back as
/// documents followed by a separator line. Other text is cut at the line boundary nearest to
/// `1 - valid_fraction` of its length. Errors when either part would be empty.
pub fn split_train_valid(text: &str, valid_fraction: f64) -> Result<(String, String)> {
    if !(0.0 < valid_fraction && valid_fraction < 1.0) {
        bail!("the validation fraction must be in (0, 1), got {valid_fraction}");
    }
    let docs = stories::documents(text);
    if text.contains(stories::END_OF_TEXT) && docs.len() >= 2 {
        let n_valid = ((docs.len() as f64 * valid_fraction).round() as usize).clamp(1, docs.len() - 1);
        let join = |ds: &[&str]| {
            let mut s = String::new();
            for d in ds {
                s.push_str(d);
                s.push('\n');
                s.push_str(stories::END_OF_TEXT);
                s.push('\n');
            }
            s
        };
        let cut = docs.len() - n_valid;
        return Ok((join(&docs[..cut]), join(&docs[cut..])));
    }
    let target = (text.len() as f64 * (1.0 - valid_fraction)) as usize;
    // The first line boundary at or after the target, else the last one before it.
    let cut = text[target..]
        .find('\n')
        .map(|i| target + i + 1)
        .filter(|&c| c < text.len())
        .or_else(|| text[..target].rfind('\n').map(|i| i + 1))
        .filter(|&c| c > 0);
    match cut {
        Some(c) => Ok((text[..c].to_string(), text[c..].to_string())),
        None => bail!(
            "cannot split the text into train and validation parts: it needs at least two lines or two \
             documents separated by {} lines",
            stories::END_OF_TEXT
        ),
    }
}

/// The text the quickstart trains on: the user's file or the built-in stories.
pub(super) fn load_corpus(opts: &Options) -> Result<(String, String)> {
    match &opts.input {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read --input {}", path.display()))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not UTF-8 text (invalid byte at offset {}); convert it to UTF-8 first",
                    path.display(),
                    e.utf8_error().valid_up_to()
                )
            })?;
            Ok((text, path.display().to_string()))
        }
        None => Ok((
            stories::generate_corpus(opts.seed, opts.corpus_bytes),
            format!("built-in stories (seed {})", opts.seed),
        )),
    }
}

pub(super) fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {} (is the disk full?)", path.display()))
}

/// The prompts of the sample generations: for the stories, an opening, an opening that fixes the
/// hero (the model should keep his name and pronoun), and none (a story from the document start).
pub(super) fn prompts(opts: &Options, valid: &str) -> Vec<String> {
    let mut out: Vec<String> = if opts.input.is_none() {
        [
            "Once upon a time,",
            "Once upon a time, there was a little boy named Tom.",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        // The user's text: its validation part's first six words verbatim, then nothing.
        let (start, end) = valid
            .split_whitespace()
            .take(6)
            .map(|w| {
                let at = w.as_ptr() as usize - valid.as_ptr() as usize;
                (at, at + w.len())
            })
            .fold((None, 0), |(s, _), (a, b)| (s.or(Some(a)), b));
        vec![valid[start.unwrap_or(0)..end].to_string(), String::new()]
    };
    out.truncate(opts.samples);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_documents_keeps_every_document_once() {
        let text = stories::generate_corpus(5, 50_000);
        let (train, valid) = split_train_valid(&text, 0.1).unwrap();
        let all = stories::documents(&text);
        let (t, v) = (stories::documents(&train), stories::documents(&valid));
        assert_eq!(t.len() + v.len(), all.len());
        assert_eq!(v.len(), (all.len() as f64 * 0.1).round() as usize);
        assert_eq!([t, v].concat(), all);
        assert!(valid.ends_with("<|endoftext|>\n"));
    }

    #[test]
    fn split_plain_text_at_a_line_boundary() {
        let text: String = (0..100).map(|i| format!("line number {i}\n")).collect();
        let (train, valid) = split_train_valid(&text, 0.2).unwrap();
        assert_eq!(format!("{train}{valid}"), text);
        assert!(train.ends_with('\n') && valid.starts_with("line number"));
        let frac = valid.len() as f64 / text.len() as f64;
        assert!((0.15..0.25).contains(&frac), "{frac}");
        assert!(split_train_valid("one line only", 0.1).is_err());
        assert!(split_train_valid(&text, 0.0).is_err());
    }
}
