#!/usr/bin/env bash
# Checks that the tokenizer tests which need ../shared/conformance/tokenizer report themselves as
# ignored, with the reason, when that folder is missing, instead of passing without running.
# Runs them with FERROLM_SHARED pointing at an empty folder (and FERROLM_REQUIRE_SHARED unset).
# Usage: tools/check_missing_fixtures_are_ignored.sh   (from the repository root; CI runs it)
set -euo pipefail
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
out=$(FERROLM_SHARED="$empty" FERROLM_REQUIRE_SHARED= cargo test --release -p ferrolm-tokenizer \
    --test conformance --test pretokenize_vs_regex 2>&1)
fail() { echo "$out" >&2; echo "FAIL: $1" >&2; exit 1; }
# conformance.rs: all 5 ignored, none passed; pretokenize_vs_regex.rs: the one that reads it ignored.
echo "$out" | grep -q "test result: ok. 0 passed; 0 failed; 5 ignored" || fail "conformance tests did not show as ignored"
echo "$out" | grep -q "real_text_splits_like_the_regex ... ignored, needs ../shared/conformance/tokenizer" \
    || fail "real_text_splits_like_the_regex did not show as ignored with its reason"
echo "$out" | grep -q "sample_text_splits_like_the_regex ... ok" || fail "the fixture-free test did not run"
echo "missing fixtures show as ignored: ok"
