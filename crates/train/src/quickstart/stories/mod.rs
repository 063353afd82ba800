//! The built-in quickstart corpus: simple children's stories generated from a grammar written for
//! the purpose, deterministic from a seed.
//!
//! Every story has a cast (a hero, a friend, sometimes a helper) whose names, kinds and pronouns
//! stay fixed for the whole story, a place, a favourite object, and one of several plots (a lost
//! object, a stuck object, sharing, a broken toy, a fear, an animal in need, a new friend, a gift),
//! told as a beginning, a middle and an end with dialogue. Each beat of a plot has several sentence
//! templates, so the text is varied (many thousands of distinct sentences) but regular: a small model
//! trained for a few minutes learns its grammar, and a model that also keeps track of who is who
//! (the hero's name and pronoun reappearing paragraphs later) does better still.
//!
//! Documents are separated by a line holding only [`END_OF_TEXT`]. A few MB take well under a
//! second to make.

use ferrolm_nn::Rng;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The document separator, on a line of its own after every story.
pub use ferrolm_tokenizer::END_OF_TEXT;

/// Default corpus size for the quickstart, in bytes of UTF-8 text.
pub const DEFAULT_CORPUS_BYTES: usize = 4_000_000;

mod cast;
mod plots;

use cast::*;
use plots::*;

/// One story (without the separator): a beginning, a middle and an end, a few paragraphs.
pub fn story(rng: &mut Rng) -> String {
    let animal_world = chance(rng, 0.35);
    let hero = if animal_world {
        animal(rng, "")
    } else {
        child(rng, "")
    };
    let friend = if animal_world {
        animal(rng, &hero.name)
    } else {
        child(rng, &hero.name)
    };
    let help = helper(rng, &hero, animal_world);
    let thing = pick(rng, THINGS);
    let place = pick(rng, PLACES);
    let plot = *pick(rng, PLOTS);

    let mut ctx = Ctx { vars: HashMap::new() };
    ctx.set_character("a", &hero);
    ctx.set_character("b", &friend);
    ctx.set_character("h", &help);
    let adj = *pick(rng, thing.adjs);
    ctx.set("obj", thing.noun);
    ctx.set("adj", adj);
    ctx.set("verb", thing.verb);
    ctx.set("place", place.name);
    ctx.set("Place", capitalize(place.name));
    ctx.set("sights", *pick(rng, place.sights));
    ctx.set("high", place.high);
    ctx.set("hide", *pick(rng, place.hide));
    ctx.set("trait", *pick(rng, TRAITS));
    ctx.set("activity", *pick(rng, ACTIVITIES));
    ctx.set("Opener", *pick(rng, OPENERS));
    ctx.set("sad", *pick(rng, FEELINGS_SAD));
    ctx.set("happy", *pick(rng, FEELINGS_HAPPY));
    let an = if hero.kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    ctx.set("a_an", an);

    let mut w = Writer {
        rng,
        ctx,
        text: String::new(),
        fresh: true,
    };
    beginning(&mut w);
    if help.name.starts_with("the ") {
        // An animal helper is introduced before the text calls it "the owl".
        w.say(&[
            "Near {place} lived a {h_kind}, who was friends with everyone.",
            "{A} also knew a {h_kind} who lived near {place}.",
            "Not far away lived a {h_kind}.",
        ]);
    }
    w.paragraph();
    match plot {
        Plot::Lost => lost(&mut w),
        Plot::Stuck => stuck(&mut w),
        Plot::Sharing => sharing(&mut w),
        Plot::Broken => broken(&mut w),
        Plot::Fear => fear(&mut w),
        Plot::Rescue => rescue(&mut w),
        Plot::NewFriend => new_friend(&mut w),
        Plot::Gift => gift(&mut w),
    }
    w.text
}

/// Generates stories from `seed` until the text reaches at least `target_bytes` bytes, each story
/// followed by a line holding [`END_OF_TEXT`]. The same seed and size give the same text.
pub fn generate_corpus(seed: u64, target_bytes: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(target_bytes + 4096);
    while text.len() < target_bytes {
        text.push_str(&story(&mut rng));
        text.push('\n');
        text.push_str(END_OF_TEXT);
        text.push('\n');
    }
    text
}

/// Writes [`generate_corpus`]`(seed, target_bytes)` to `path`; returns the number of bytes.
pub fn write_corpus(path: &Path, seed: u64, target_bytes: usize) -> anyhow::Result<usize> {
    use anyhow::Context;
    let text = generate_corpus(seed, target_bytes);
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(text.len())
}

/// The documents of a text: the pieces between [`END_OF_TEXT`] separators, trimmed, empty ones
/// dropped.
pub fn documents(text: &str) -> Vec<&str> {
    text.split(END_OF_TEXT)
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn same_seed_same_corpus_other_seed_other_corpus() {
        let a = generate_corpus(7, 200_000);
        let b = generate_corpus(7, 200_000);
        assert_eq!(a, b);
        let c = generate_corpus(8, 200_000);
        assert_ne!(a, c);
        // A longer corpus from the same seed starts with the shorter one.
        let d = generate_corpus(7, 400_000);
        assert!(d.starts_with(&a));
    }

    #[test]
    fn size_is_reached_quickly_and_documents_are_separated() {
        let t = std::time::Instant::now();
        let text = generate_corpus(1, DEFAULT_CORPUS_BYTES);
        let elapsed = t.elapsed();
        assert!(text.len() >= DEFAULT_CORPUS_BYTES && text.len() < DEFAULT_CORPUS_BYTES + 10_000);
        // Generous bound: it takes a fraction of a second; this only catches a pathological slowdown.
        assert!(elapsed.as_secs_f64() < 20.0, "took {elapsed:?}");
        assert!(text.ends_with(&format!("\n{END_OF_TEXT}\n")));
        // Every separator is a line of its own, and no document is empty.
        let lines: Vec<&str> = text.lines().collect();
        let seps = lines.iter().filter(|l| l.contains(END_OF_TEXT)).count();
        assert!(lines
            .iter()
            .filter(|l| l.contains(END_OF_TEXT))
            .all(|l| *l == END_OF_TEXT));
        let docs = documents(&text);
        assert_eq!(docs.len(), seps);
        assert!(seps > 1000, "{seps} stories");
        for d in &docs {
            assert!(d.len() > 200, "short story: {d:?}");
            assert!(d.ends_with(['.', '!', '"']), "story ends mid-sentence: {d:?}");
            assert!(!d.contains('{') && !d.contains('}'), "unfilled template: {d:?}");
            assert!(!d.contains("  "), "double space: {d:?}");
        }
        assert!(text.is_ascii());
    }

    #[test]
    fn stories_are_varied() {
        let text = generate_corpus(3, 1_000_000);
        let docs = documents(&text);
        let distinct_docs: HashSet<&str> = docs.iter().copied().collect();
        assert_eq!(distinct_docs.len(), docs.len(), "repeated stories");
        let sentences: HashSet<&str> = text
            .split(['.', '!', '?', '\n'])
            .map(str::trim)
            .filter(|s| s.len() > 3)
            .collect();
        assert!(
            sentences.len() > 5_000,
            "only {} distinct sentences",
            sentences.len()
        );
        let openings: HashSet<&str> = docs.iter().map(|d| d.split('.').next().unwrap()).collect();
        assert!(openings.len() > 200, "only {} distinct openings", openings.len());
        let words: HashSet<&str> = text.split_whitespace().collect();
        assert!(words.len() > 500, "only {} distinct words", words.len());
        // Every plot appears.
        for marker in [
            "could not find",
            "stuck",
            "share",
            "broke",
            "scared",
            "birthday",
            "hello",
        ] {
            assert!(
                docs.iter().filter(|d| d.contains(marker)).count() > 20,
                "{marker}"
            );
        }
    }

    #[test]
    fn hero_name_and_pronouns_stay_consistent_within_a_story() {
        let mut rng = Rng::new(11);
        for _ in 0..500 {
            let s = story(&mut rng);
            // The first sentence names the hero; the name comes back later in the story.
            let first = s.split('.').next().unwrap();
            let name = first
                .split_whitespace()
                .rev()
                .find(|w| w.chars().next().unwrap().is_uppercase())
                .unwrap()
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_string();
            let later = &s[first.len()..];
            assert!(later.contains(&name), "hero {name} not mentioned again in {s:?}");
            // An animal helper is introduced ("a wise old owl") before it is "the owl".
            for (the, intro) in [
                ("the owl", "wise old owl"),
                ("the old turtle", "kind old turtle"),
                ("the big bear", "big friendly bear"),
                ("the goose", "clever goose"),
                ("the deer", "a gentle deer"),
            ] {
                if let Some(at) = s.to_lowercase().find(the) {
                    assert!(s[..at].contains(intro), "{the} before {intro}: {s}");
                }
            }
            // A girl's name never takes "his", a boy's never "her", in the sentence that follows it.
            let second = s.split(". ").nth(1).unwrap_or("");
            if GIRL_NAMES.contains(&name.as_str()) && first.contains("girl") {
                assert!(!second.starts_with("He ") && !second.starts_with("His "), "{s}");
            }
            if BOY_NAMES.contains(&name.as_str()) && first.contains("boy") {
                assert!(!second.starts_with("She ") && !second.starts_with("Her "), "{s}");
            }
        }
    }

    #[test]
    fn write_corpus_writes_the_generated_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stories.txt");
        let n = write_corpus(&path, 4, 30_000).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), n);
        assert_eq!(text, generate_corpus(4, 30_000));
        let err = write_corpus(&dir.path().join("no/such/dir/x.txt"), 4, 10).unwrap_err();
        assert!(format!("{err:#}").contains("no/such/dir"), "{err:#}");
    }
}
