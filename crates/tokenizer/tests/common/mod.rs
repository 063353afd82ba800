//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `<workspace>/../shared/<sub>` (or `$FERROLM_SHARED/<sub>`); a panic when it is missing. The
/// tests that call it are `#[cfg_attr(not(shared_fixtures), ignore = ...)]` (see build.rs): they
/// run only when the folder is there, or when `FERROLM_REQUIRE_SHARED=1` (CI) makes its absence a
/// failure; otherwise `cargo test` lists them as ignored with the reason.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let dir = shared_root().join(sub);
    if dir.exists() {
        return Some(dir);
    }
    panic!(
        "{} is missing (FERROLM_REQUIRE_SHARED=1, or the folder went away after the build; set \
         FERROLM_SHARED to where it is)",
        dir.display()
    );
}

/// `$FERROLM_SHARED`, or `<workspace>/../shared`: where the shared fixtures and data live.
pub fn shared_root() -> PathBuf {
    std::env::var_os("FERROLM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// `shared("conformance/tokenizer")`: the tokenizer conformance fixtures (a panic when missing).
pub fn conformance_dir() -> PathBuf {
    shared("conformance/tokenizer").expect("shared() returns the folder or panics")
}

/// `conformance_test!(name, |dir| { ... })`: a `#[test]` that needs the conformance fixtures; `dir`
/// is `conformance_dir()`. Built without them (see build.rs) it is `#[ignore]`d with the reason.
#[allow(unused_macros)] // not every test file has such tests
macro_rules! conformance_test {
    ($name:ident, |$dir:ident| $body:block) => {
        #[test]
        #[cfg_attr(
            not(shared_fixtures),
            ignore = "needs ../shared/conformance/tokenizer (or $FERROLM_SHARED), which is missing"
        )]
        fn $name() {
            let $dir = $crate::common::conformance_dir();
            $body
        }
    };
}
#[allow(unused_imports)]
pub(crate) use conformance_test;

/// A reader that hands out its data in pieces of the given sizes (cycled), to test streaming.
pub struct ChoppyReader<'a> {
    pub data: &'a [u8],
    pub sizes: Vec<usize>,
    pub i: usize,
}

impl<'a> ChoppyReader<'a> {
    /// `data` in reads of `sizes[0]`, `sizes[1]`, ... bytes, cycled (a 0 counts as 1).
    pub fn new(data: &'a [u8], sizes: Vec<usize>) -> Self {
        ChoppyReader { data, sizes, i: 0 }
    }
}

impl std::io::Read for ChoppyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// `tok.encode_iter` over `text` handed out in reads of `sizes` bytes (`ChoppyReader`).
pub fn encode_in_reads(tok: &ferrolm_tokenizer::Tokenizer, text: &str, sizes: Vec<usize>) -> Vec<u32> {
    let reader = ChoppyReader::new(text.as_bytes(), sizes);
    tok.encode_iter(reader).map(Result::unwrap).collect()
}

/// A few paragraphs of English with contractions, numbers, punctuation, runs of whitespace and
/// non-ASCII text, written for the tests.
pub fn sample_text() -> String {
    let mut s = String::new();
    let lines = [
        "Once upon a time, there was a little girl named Lily. She loved to play outside.",
        "\"I'll go,\" she said. \"You're not coming? We've got 3 apples and 12.5 pears!\"",
        "The dog's ball rolled   under the   table;  they'd never find it again...",
        "Café, naïve, résumé — and 東京 in 2024: ½ of ①②③; tabs\there\tand\tthere.",
        "  Indented line with trailing spaces   ",
        "",
        "Numbers: 1234567890 0.5 -17 +42 3x4 4th 1st 2nd; emoji 🙂🙃 and ZWJ 👩‍💻.",
        "It's what it's. I'd've. 'quoted' 'S 'LL 'll 're 've 'm 'd 't 's",
    ];
    for round in 0..40 {
        for (i, line) in lines.iter().enumerate() {
            if (round + i) % 5 == 0 {
                s.push_str("<|endoftext|>");
            }
            s.push_str(line);
            s.push('\n');
            if (round * 7 + i) % 3 == 0 {
                s.push('\n');
            }
        }
    }
    s
}
