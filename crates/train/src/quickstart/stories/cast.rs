//! The stories' cast and world: characters (names, kinds, pronouns), things, places, and the
//! text writer that fills `{placeholders}` from the story's context.

use ferrolm_nn::Rng;
use std::collections::HashMap;

pub(super) fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

pub(super) fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.uniform() < p
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Gender {
    She,
    He,
}

impl Gender {
    pub(super) fn he(self) -> &'static str {
        match self {
            Gender::She => "she",
            Gender::He => "he",
        }
    }
    pub(super) fn him(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "him",
        }
    }
    pub(super) fn his(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "his",
        }
    }
}

/// A character of a story: how it is named in the text and its pronouns.
pub(super) struct Character {
    /// How the text names it after the introduction ("Lily", "the owl", "her mom").
    pub(super) name: String,
    /// Its kind for introductions ("little girl", "puppy", "wise old owl").
    pub(super) kind: &'static str,
    pub(super) gender: Gender,
}

pub(super) const GIRL_NAMES: &[&str] = &[
    "Lily", "Mia", "Emma", "Anna", "Sara", "Lucy", "Zoe", "Ella", "Rosie", "Amy", "Sophie", "Grace", "Nora",
    "Ruby", "Molly", "Kate", "Jenny", "Maya", "Chloe", "Sue", "Ivy", "Hannah", "Lena", "Tina",
];
pub(super) const BOY_NAMES: &[&str] = &[
    "Tom", "Ben", "Sam", "Jack", "Leo", "Tim", "Finn", "Jake", "Noah", "Oliver", "Henry", "Luke", "Ryan",
    "Theo", "Danny", "Eli", "Joe", "Bob", "Alex", "Adam", "Mark", "Peter", "Owen", "Kevin",
];
pub(super) const ANIMAL_NAMES: &[&str] = &[
    "Pip", "Bella", "Coco", "Fluffy", "Spot", "Benny", "Milo", "Rex", "Tilly", "Sunny", "Buddy", "Pepper",
    "Nibbles", "Hoppy", "Daisy", "Max", "Whiskers", "Bubbles", "Rusty", "Goldie",
];
pub(super) const ANIMAL_KINDS: &[&str] = &[
    "bunny",
    "puppy",
    "kitten",
    "little bear",
    "fox",
    "duck",
    "mouse",
    "squirrel",
    "bird",
    "frog",
    "lamb",
    "little pig",
];
pub(super) const TRAITS: &[&str] = &[
    "kind", "curious", "brave", "shy", "happy", "playful", "clever", "silly", "gentle", "cheerful",
];
pub(super) const ACTIVITIES: &[&str] = &[
    "play outside",
    "sing songs",
    "draw pictures",
    "run in the grass",
    "read books",
    "look at the stars",
    "jump in puddles",
    "dance",
    "build big towers",
    "pick flowers",
    "climb trees",
    "splash in the water",
];

/// A favourite object: its noun, words that describe it, and what one does with it.
pub(super) struct Thing {
    pub(super) noun: &'static str,
    pub(super) adjs: &'static [&'static str],
    /// A verb phrase taking the object ("fly" as in "fly her kite").
    pub(super) verb: &'static str,
}

const fn thing(noun: &'static str, adjs: &'static [&'static str], verb: &'static str) -> Thing {
    Thing { noun, adjs, verb }
}

/// One thing a line: noun, adjectives, verb.
pub(super) const THINGS: &[Thing] = &[
    thing("kite", &["red", "blue", "big", "colorful", "yellow"], "fly"),
    thing("ball", &["red", "bouncy", "big", "shiny", "green"], "play with"),
    thing("toy boat", &["little", "blue", "wooden", "white"], "sail"),
    thing("teddy bear", &["soft", "brown", "cozy", "fluffy"], "hug"),
    thing("book", &["big", "new", "funny", "thick"], "read"),
    thing("balloon", &["red", "pink", "big", "shiny"], "play with"),
    thing("toy car", &["fast", "red", "little", "shiny"], "race"),
    thing("doll", &["pretty", "small", "tiny", "soft"], "play with"),
    thing("hat", &["big", "funny", "yellow", "green"], "wear"),
    thing("drum", &["little", "loud", "red", "shiny"], "play"),
];

/// A place: how the text names it and what one sees there.
pub(super) struct Place {
    pub(super) name: &'static str,
    pub(super) sights: &'static [&'static str],
    /// Where something can get stuck.
    pub(super) high: &'static str,
    /// Where something lost can be found.
    pub(super) hide: &'static [&'static str],
}

const fn place(
    name: &'static str,
    sights: &'static [&'static str],
    high: &'static str,
    hide: &'static [&'static str],
) -> Place {
    Place {
        name,
        sights,
        high,
        hide,
    }
}

/// One place a line: name, sights, where something gets stuck, where something lost is found.
#[rustfmt::skip]
pub(super) const PLACES: &[Place] = &[
    place("the park", &["tall trees and a big slide", "green grass and a little pond", "many swings and happy kids"], "a tall tree", &["under a bench", "behind a big tree", "near the pond"]),
    place("the forest", &["tall trees and pretty flowers", "soft moss and singing birds", "big rocks and a little stream"], "a high branch", &["under a bush", "behind a big rock", "in a pile of leaves"]),
    place("the beach", &["soft sand and blue water", "big waves and white shells", "warm sand and little crabs"], "a tall rock", &["in the sand", "behind a big rock", "near the water"]),
    place("the garden", &["red roses and buzzing bees", "tall sunflowers and green beans", "pretty flowers and a small pond"], "the top of the fence", &["under a bush", "behind the flowers", "next to the pond"]),
    place("the farm", &["cows, pigs and a big red barn", "fat sheep and noisy hens", "a big tractor and a field of corn"], "the roof of the barn", &["in the hay", "behind the barn", "near the pig pen"]),
    place("the hill", &["long grass and yellow flowers", "a big old tree at the top", "a view of the whole town"], "a tall tree", &["in the long grass", "behind a rock", "under a bush"]),
    place("the playground", &["a big slide and many swings", "a sandbox and a climbing frame", "happy kids playing tag"], "the top of the slide", &["in the sandbox", "under the slide", "behind the swings"]),
    place("the lake", &["calm water and white ducks", "tall reeds and green frogs", "a small dock and a red boat"], "a tall tree", &["in the reeds", "under the dock", "behind a rock"]),
];

pub(super) const OPENERS: &[&str] = &[
    "One day",
    "One sunny day",
    "One morning",
    "On a warm summer day",
    "One windy afternoon",
    "One bright morning",
    "After lunch",
    "On Saturday",
];

pub(super) const FEELINGS_SAD: &[&str] = &["sad", "upset", "very sad", "worried"];
pub(super) const FEELINGS_HAPPY: &[&str] = &["happy", "very happy", "so happy", "glad"];

/// The values a story's templates refer to, by key.
pub(super) struct Ctx {
    pub(super) vars: HashMap<&'static str, String>,
}

pub(super) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl Ctx {
    pub(super) fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.vars.insert(key, value.into());
    }

    /// Sets `{p}` (name), `{p_he}`, `{p_him}`, `{p_his}`, `{p_kind}` and capitalized `{P_he}`,
    /// `{P_his}`, `{P}` for a character under the prefix `p` (one of "a" hero, "b" friend, "h"
    /// helper, "n" newcomer).
    pub(super) fn set_character(&mut self, p: &'static str, c: &Character) {
        let keys: &[(
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
        )] = &[
            ("a", "a_he", "a_him", "a_his", "a_kind"),
            ("b", "b_he", "b_him", "b_his", "b_kind"),
            ("h", "h_he", "h_him", "h_his", "h_kind"),
            ("n", "n_he", "n_him", "n_his", "n_kind"),
        ];
        let caps: &[(&'static str, &'static str, &'static str)] = &[
            ("A", "A_he", "A_his"),
            ("B", "B_he", "B_his"),
            ("H", "H_he", "H_his"),
            ("N", "N_he", "N_his"),
        ];
        let i = keys.iter().position(|k| k.0 == p).expect("character prefix");
        let (n, he, him, his, kind) = keys[i];
        let (cn, che, chis) = caps[i];
        self.set(n, c.name.clone());
        self.set(cn, capitalize(&c.name));
        self.set(he, c.gender.he());
        self.set(che, capitalize(c.gender.he()));
        self.set(him, c.gender.him());
        self.set(his, c.gender.his());
        self.set(chis, capitalize(c.gender.his()));
        self.set(kind, c.kind);
    }

    /// Replaces every `{key}` of `template` by its value. Panics on an unknown key (a bug in the
    /// grammar, caught by the tests, which generate thousands of stories).
    pub(super) fn fill(&self, template: &str, out: &mut String) {
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').expect("unclosed '{' in a story template") + open;
            let key = &rest[open + 1..close];
            match self.vars.get(key) {
                Some(v) => out.push_str(v),
                None => panic!("story template uses unknown key {{{key}}}: {template:?}"),
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
    }
}

/// Builds a story paragraph by paragraph, sentence by sentence.
pub(super) struct Writer<'r> {
    pub(super) rng: &'r mut Rng,
    pub(super) ctx: Ctx,
    pub(super) text: String,
    /// True at the start of a paragraph.
    pub(super) fresh: bool,
}

impl Writer<'_> {
    /// Appends one of `templates`, chosen at random, as the next sentence(s).
    pub(super) fn say(&mut self, templates: &[&str]) {
        let t = *pick(self.rng, templates);
        if !self.fresh {
            self.text.push(' ');
        }
        self.ctx.fill(t, &mut self.text);
        self.fresh = false;
    }

    /// Like `say` with probability `p`, else nothing.
    pub(super) fn maybe(&mut self, p: f64, templates: &[&str]) {
        if chance(self.rng, p) {
            self.say(templates);
        }
    }

    pub(super) fn paragraph(&mut self) {
        if !self.fresh {
            self.text.push_str("\n\n");
            self.fresh = true;
        }
    }
}

pub(super) fn child(rng: &mut Rng, avoid: &str) -> Character {
    loop {
        let gender = if chance(rng, 0.5) { Gender::She } else { Gender::He };
        let (name, kind) = match gender {
            Gender::She => (*pick(rng, GIRL_NAMES), *pick(rng, &["girl", "little girl"])),
            Gender::He => (*pick(rng, BOY_NAMES), *pick(rng, &["boy", "little boy"])),
        };
        if name != avoid {
            return Character {
                name: name.to_string(),
                kind,
                gender,
            };
        }
    }
}

pub(super) fn animal(rng: &mut Rng, avoid: &str) -> Character {
    loop {
        let name = *pick(rng, ANIMAL_NAMES);
        if name != avoid {
            let gender = if chance(rng, 0.5) { Gender::She } else { Gender::He };
            let kind = *pick(rng, ANIMAL_KINDS);
            return Character {
                name: name.to_string(),
                kind,
                gender,
            };
        }
    }
}

/// A grown-up or a wise animal who helps; named by a role ("her mom", "the owl").
pub(super) fn helper(rng: &mut Rng, hero: &Character, animal_world: bool) -> Character {
    let his = hero.gender.his();
    if animal_world || chance(rng, 0.3) {
        let (name, kind, gender) = *pick(
            rng,
            &[
                ("the owl", "wise old owl", Gender::He),
                ("the old turtle", "kind old turtle", Gender::She),
                ("the deer", "gentle deer", Gender::She),
                ("the big bear", "big friendly bear", Gender::He),
                ("the goose", "clever goose", Gender::She),
            ],
        );
        Character {
            name: name.to_string(),
            kind,
            gender,
        }
    } else {
        let (role, gender) = *pick(
            rng,
            &[
                ("mom", Gender::She),
                ("dad", Gender::He),
                ("grandma", Gender::She),
                ("grandpa", Gender::He),
            ],
        );
        Character {
            name: format!("{his} {role}"),
            kind: role,
            gender,
        }
    }
}
