//! Sets `cfg(shared_fixtures)` when the conformance fixtures (`../shared/conformance/tokenizer`, or
//! `$FERROLM_SHARED/conformance/tokenizer`) are present, or when `FERROLM_REQUIRE_SHARED=1` (CI,
//! where their absence must fail). Without it the tests that need them are `#[ignore]`d with the
//! reason, so `cargo test` reports them as ignored instead of as passed.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_fixtures)");
    println!("cargo::rerun-if-env-changed=FERROLM_SHARED");
    println!("cargo::rerun-if-env-changed=FERROLM_REQUIRE_SHARED");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = std::env::var_os("FERROLM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../../shared"));
    let dir = root.join("conformance/tokenizer");
    // Watch the nearest existing ancestor: its listing changes when the folder appears or goes.
    let mut watch: &Path = &dir;
    while !watch.exists() {
        match watch.parent() {
            Some(p) => watch = p,
            None => break,
        }
    }
    println!("cargo::rerun-if-changed={}", watch.display());
    let required = std::env::var("FERROLM_REQUIRE_SHARED").as_deref() == Ok("1");
    if dir.is_dir() || required {
        println!("cargo::rustc-cfg=shared_fixtures");
    }
}
