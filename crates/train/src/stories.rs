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
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Default corpus size for the quickstart, in bytes of UTF-8 text.
pub const DEFAULT_CORPUS_BYTES: usize = 4_000_000;

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.uniform() < p
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gender {
    She,
    He,
}

impl Gender {
    fn he(self) -> &'static str {
        match self {
            Gender::She => "she",
            Gender::He => "he",
        }
    }
    fn him(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "him",
        }
    }
    fn his(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "his",
        }
    }
}

/// A character of a story: how it is named in the text and its pronouns.
struct Character {
    /// How the text names it after the introduction ("Lily", "the owl", "her mom").
    name: String,
    /// Its kind for introductions ("little girl", "puppy", "wise old owl").
    kind: &'static str,
    gender: Gender,
}

const GIRL_NAMES: &[&str] = &[
    "Lily", "Mia", "Emma", "Anna", "Sara", "Lucy", "Zoe", "Ella", "Rosie", "Amy", "Sophie", "Grace", "Nora",
    "Ruby", "Molly", "Kate", "Jenny", "Maya", "Chloe", "Sue", "Ivy", "Hannah", "Lena", "Tina",
];
const BOY_NAMES: &[&str] = &[
    "Tom", "Ben", "Sam", "Jack", "Leo", "Tim", "Finn", "Jake", "Noah", "Oliver", "Henry", "Luke", "Ryan",
    "Theo", "Danny", "Eli", "Joe", "Bob", "Alex", "Adam", "Mark", "Peter", "Owen", "Kevin",
];
const ANIMAL_NAMES: &[&str] = &[
    "Pip", "Bella", "Coco", "Fluffy", "Spot", "Benny", "Milo", "Rex", "Tilly", "Sunny", "Buddy", "Pepper",
    "Nibbles", "Hoppy", "Daisy", "Max", "Whiskers", "Bubbles", "Rusty", "Goldie",
];
const ANIMAL_KINDS: &[&str] = &[
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
const TRAITS: &[&str] = &[
    "kind", "curious", "brave", "shy", "happy", "playful", "clever", "silly", "gentle", "cheerful",
];
const ACTIVITIES: &[&str] = &[
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
struct Thing {
    noun: &'static str,
    adjs: &'static [&'static str],
    /// A verb phrase taking the object ("fly" as in "fly her kite").
    verb: &'static str,
}

const THINGS: &[Thing] = &[
    Thing {
        noun: "kite",
        adjs: &["red", "blue", "big", "colorful", "yellow"],
        verb: "fly",
    },
    Thing {
        noun: "ball",
        adjs: &["red", "bouncy", "big", "shiny", "green"],
        verb: "play with",
    },
    Thing {
        noun: "toy boat",
        adjs: &["little", "blue", "wooden", "white"],
        verb: "sail",
    },
    Thing {
        noun: "teddy bear",
        adjs: &["soft", "brown", "cozy", "fluffy"],
        verb: "hug",
    },
    Thing {
        noun: "book",
        adjs: &["big", "new", "funny", "thick"],
        verb: "read",
    },
    Thing {
        noun: "balloon",
        adjs: &["red", "pink", "big", "shiny"],
        verb: "play with",
    },
    Thing {
        noun: "toy car",
        adjs: &["fast", "red", "little", "shiny"],
        verb: "race",
    },
    Thing {
        noun: "doll",
        adjs: &["pretty", "small", "tiny", "soft"],
        verb: "play with",
    },
    Thing {
        noun: "hat",
        adjs: &["big", "funny", "yellow", "green"],
        verb: "wear",
    },
    Thing {
        noun: "drum",
        adjs: &["little", "loud", "red", "shiny"],
        verb: "play",
    },
];

/// A place: how the text names it and what one sees there.
struct Place {
    name: &'static str,
    sights: &'static [&'static str],
    /// Where something can get stuck.
    high: &'static str,
    /// Where something lost can be found.
    hide: &'static [&'static str],
}

const PLACES: &[Place] = &[
    Place {
        name: "the park",
        sights: &[
            "tall trees and a big slide",
            "green grass and a little pond",
            "many swings and happy kids",
        ],
        high: "a tall tree",
        hide: &["under a bench", "behind a big tree", "near the pond"],
    },
    Place {
        name: "the forest",
        sights: &[
            "tall trees and pretty flowers",
            "soft moss and singing birds",
            "big rocks and a little stream",
        ],
        high: "a high branch",
        hide: &["under a bush", "behind a big rock", "in a pile of leaves"],
    },
    Place {
        name: "the beach",
        sights: &[
            "soft sand and blue water",
            "big waves and white shells",
            "warm sand and little crabs",
        ],
        high: "a tall rock",
        hide: &["in the sand", "behind a big rock", "near the water"],
    },
    Place {
        name: "the garden",
        sights: &[
            "red roses and buzzing bees",
            "tall sunflowers and green beans",
            "pretty flowers and a small pond",
        ],
        high: "the top of the fence",
        hide: &["under a bush", "behind the flowers", "next to the pond"],
    },
    Place {
        name: "the farm",
        sights: &[
            "cows, pigs and a big red barn",
            "fat sheep and noisy hens",
            "a big tractor and a field of corn",
        ],
        high: "the roof of the barn",
        hide: &["in the hay", "behind the barn", "near the pig pen"],
    },
    Place {
        name: "the hill",
        sights: &[
            "long grass and yellow flowers",
            "a big old tree at the top",
            "a view of the whole town",
        ],
        high: "a tall tree",
        hide: &["in the long grass", "behind a rock", "under a bush"],
    },
    Place {
        name: "the playground",
        sights: &[
            "a big slide and many swings",
            "a sandbox and a climbing frame",
            "happy kids playing tag",
        ],
        high: "the top of the slide",
        hide: &["in the sandbox", "under the slide", "behind the swings"],
    },
    Place {
        name: "the lake",
        sights: &[
            "calm water and white ducks",
            "tall reeds and green frogs",
            "a small dock and a red boat",
        ],
        high: "a tall tree",
        hide: &["in the reeds", "under the dock", "behind a rock"],
    },
];

const OPENERS: &[&str] = &[
    "One day",
    "One sunny day",
    "One morning",
    "On a warm summer day",
    "One windy afternoon",
    "One bright morning",
    "After lunch",
    "On Saturday",
];

const FEELINGS_SAD: &[&str] = &["sad", "upset", "very sad", "worried"];
const FEELINGS_HAPPY: &[&str] = &["happy", "very happy", "so happy", "glad"];

/// The values a story's templates refer to, by key.
struct Ctx {
    vars: HashMap<&'static str, String>,
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl Ctx {
    fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.vars.insert(key, value.into());
    }

    /// Sets `{p}` (name), `{p_he}`, `{p_him}`, `{p_his}`, `{p_kind}` and capitalized `{P_he}`,
    /// `{P_his}`, `{P}` for a character under the prefix `p` (one of "a" hero, "b" friend, "h"
    /// helper, "n" newcomer).
    fn set_character(&mut self, p: &'static str, c: &Character) {
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
    fn fill(&self, template: &str, out: &mut String) {
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
struct Writer<'r> {
    rng: &'r mut Rng,
    ctx: Ctx,
    text: String,
    /// True at the start of a paragraph.
    fresh: bool,
}

impl Writer<'_> {
    /// Appends one of `templates`, chosen at random, as the next sentence(s).
    fn say(&mut self, templates: &[&str]) {
        let t = *pick(self.rng, templates);
        if !self.fresh {
            self.text.push(' ');
        }
        self.ctx.fill(t, &mut self.text);
        self.fresh = false;
    }

    /// Like `say` with probability `p`, else nothing.
    fn maybe(&mut self, p: f64, templates: &[&str]) {
        if chance(self.rng, p) {
            self.say(templates);
        }
    }

    fn paragraph(&mut self) {
        if !self.fresh {
            self.text.push_str("\n\n");
            self.fresh = true;
        }
    }
}

fn child(rng: &mut Rng, avoid: &str) -> Character {
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

fn animal(rng: &mut Rng, avoid: &str) -> Character {
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
fn helper(rng: &mut Rng, hero: &Character, animal_world: bool) -> Character {
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

/// The plots a story can follow.
#[derive(Clone, Copy, Debug)]
enum Plot {
    Lost,
    Stuck,
    Sharing,
    Broken,
    Fear,
    Rescue,
    NewFriend,
    Gift,
}

const PLOTS: &[Plot] = &[
    Plot::Lost,
    Plot::Stuck,
    Plot::Sharing,
    Plot::Broken,
    Plot::Fear,
    Plot::Rescue,
    Plot::NewFriend,
    Plot::Gift,
];

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

fn beginning(w: &mut Writer) {
    w.say(&[
        "Once upon a time, there was {a_an} {a_kind} named {a}.",
        "Once upon a time, there was a {trait} {a_kind} named {a}.",
        "There once was {a_an} {a_kind} called {a}.",
        "{A} was {a_an} {a_kind} who lived in a small house near {place}.",
        "Once upon a time, in a small town, there lived {a_an} {a_kind} named {a}.",
    ]);
    w.say(&[
        "{A_he} was very {trait}.",
        "{A_he} was {trait} and loved to {activity}.",
        "{A_he} loved to {activity}.",
        "Every day, {a} liked to {activity}.",
        "{A} was a {trait} {a_kind}, and {a_he} loved to {activity}.",
    ]);
    w.say(&[
        "{A} had a {adj} {obj}. {A_he} loved {a_his} {obj} very much.",
        "{A_his} favorite toy was a {adj} {obj}.",
        "{A} had a {adj} {obj} that {a_he} took everywhere.",
        "{A_he} had a {adj} {obj}, and {a_he} liked to {verb} it every day.",
    ]);
    w.maybe(
        0.6,
        &[
            "{A} had a friend named {b}. {B_he} was a {trait} {b_kind}.",
            "{A_his} best friend was a {b_kind} named {b}.",
            "{A} and {b} were good friends. They played together every day.",
            "{A_he} had a friend called {b}, who lived next door.",
        ],
    );
}

/// The plots that go out to the place together. `chatter`: whether a line of dialogue about the
/// object may follow (not where the plot itself is about asking for it).
fn go_out(w: &mut Writer, chatter: bool) {
    w.say(&[
        "{Opener}, {a} and {b} went to {place}.",
        "{Opener}, {a} took {a_his} {obj} to {place}. {A_his} friend {b} came too.",
        "{Opener}, {a} asked {b} to come and play at {place}.",
        "{Opener}, {a} and {a_his} friend {b} walked to {place} with the {obj}.",
    ]);
    w.maybe(
        0.6,
        &[
            "At {place}, there were {sights}.",
            "{Place} had {sights}.",
            "They saw {sights}.",
        ],
    );
    if !chatter {
        return;
    }
    w.maybe(
        0.7,
        &[
            "\"Let's {verb} my {obj}!\" said {a}.",
            "\"Can we {verb} your {obj}?\" asked {b}. \"Yes!\" said {a}.",
            "{A} said, \"This is the best day ever!\"",
            "\"Look at my {adj} {obj}!\" said {a}. {B} smiled.",
        ],
    );
}

fn ending(w: &mut Writer, morals: &[&str]) {
    w.paragraph();
    w.say(morals);
    w.maybe(
        0.7,
        &[
            "From that day on, {a} and {b} were best friends.",
            "They played at {place} until the sun went down.",
            "Then they went home, tired and {happy}.",
            "{A} smiled. It was a good day.",
            "That night, {a} went to bed with a big smile.",
        ],
    );
}

fn lost(w: &mut Writer) {
    go_out(w, true);
    w.say(&[
        "They played for a long time. When it was time to go, {a} could not find {a_his} {obj}.",
        "{A} put {a_his} {obj} down to play on the grass. Later, the {obj} was gone!",
        "After a while, {a} looked around. {A_his} {obj} was not there!",
    ]);
    w.say(&[
        "\"Oh no! Where is my {obj}?\" {a} cried.",
        "{A} felt {sad}. \"I lost my {obj}!\" {a_he} said.",
        "{A_he} was {sad}. \"My {adj} {obj} is gone,\" {a_he} said.",
    ]);
    w.paragraph();
    w.say(&[
        "{B} said, \"Don't worry, {a}. We will find it together.\"",
        "\"I will help you look,\" said {b}.",
        "{B} held {a_his} hand. \"Let's look for it,\" {b_he} said.",
    ]);
    w.say(&[
        "They looked under the trees and behind the rocks, but they could not find it.",
        "They looked everywhere. They looked high and low.",
        "They looked and looked, but the {obj} was not there.",
    ]);
    w.say(&[
        "Then {h} came by. \"Why are you {sad}?\" asked {h}.",
        "Then {h} saw them. \"What is wrong?\" {h_he} asked.",
        "Just then, {h} came to help.",
    ]);
    w.say(&[
        "\"I saw a {adj} {obj} {hide},\" said {h}.",
        "{H} pointed and said, \"Look {hide}!\"",
        "{H} helped them look, and soon {h_he} saw something {hide}.",
    ]);
    w.say(&[
        "{A} ran to look. There was {a_his} {obj}!",
        "They ran over, and there it was: the {adj} {obj}!",
        "{A} looked {hide} and found {a_his} {obj}.",
    ]);
    ending(
        w,
        &[
            "{A} hugged {a_his} {obj}. \"Thank you!\" {a_he} said to {b} and {h}. {A_he} was {happy}.",
            "{A} was {happy}. \"Thank you for helping me,\" {a_he} said.",
            "{A} smiled and said, \"Thank you, {b}. You are a good friend.\"",
        ],
    );
}

fn stuck(w: &mut Writer) {
    go_out(w, true);
    w.say(&[
        "They had lots of fun. But then a big wind came, and the {obj} flew up and got stuck on {high}.",
        "{A} threw the {obj} up high. It landed on {high} and got stuck!",
        "Suddenly, the {obj} bounced away and got stuck on {high}.",
    ]);
    w.say(&[
        "\"Oh no!\" said {a}. \"My {obj} is stuck!\"",
        "{A} felt {sad}. {A_he} could not reach {a_his} {obj}.",
        "{A} tried to jump and get it, but {a_he} was too small.",
    ]);
    w.paragraph();
    w.say(&[
        "{B} had an idea. \"Let's find a long stick!\" {b_he} said.",
        "{B} tried to climb up, but it was too high.",
        "\"I can help,\" said {b}. {B_he} stood on a big rock, but {b_he} could not reach it either.",
    ]);
    w.say(&[
        "Then {h} came. {H_he} was much bigger than them.",
        "Just then, {h} walked by and saw them.",
        "They asked {h} for help.",
    ]);
    w.say(&[
        "{H} reached up and got the {obj} down.",
        "{H} used a long stick and pushed the {obj}. It fell down into {a_his} hands.",
        "{H} smiled and said, \"Here you go, {a}.\" {H_he} gave {a} the {obj}.",
    ]);
    ending(
        w,
        &[
            "{A} was {happy} to have {a_his} {obj} back. \"Thank you!\" {a_he} said.",
            "{A} and {b} cheered. They thanked {h} and played again, more careful this time.",
            "{A} learned to be careful with {a_his} {obj}. {A_he} said thank you to {h}.",
        ],
    );
}

fn sharing(w: &mut Writer) {
    go_out(w, false);
    w.say(&[
        "{B} wanted to {verb} the {obj} too. \"Can I have a turn?\" {b_he} asked.",
        "{B} looked at the {obj}. \"Can I {verb} it?\" {b_he} asked.",
        "\"Please let me {verb} your {obj},\" said {b}.",
    ]);
    w.say(&[
        "But {a} said, \"No! It is mine!\"",
        "{A} held the {obj} tight. \"No, it is my {obj},\" {a_he} said.",
        "{A} did not want to share. {A_he} said no.",
    ]);
    w.say(&[
        "{B} was {sad}. {B_he} sat down and did not say a word.",
        "{B} felt {sad} and walked away.",
        "{B_his} eyes were wet. {B_he} was very {sad}.",
    ]);
    w.paragraph();
    w.say(&[
        "{A} played alone, but it was not fun. {A_he} looked at {b}.",
        "{A} thought about it. Playing alone was not fun at all.",
        "Soon {a} felt bad. {A_he} did not like to see {a_his} friend {sad}.",
    ]);
    w.maybe(
        0.5,
        &[
            "{H} said, \"It is good to share, {a}.\"",
            "{A} remembered what {h} always said: \"Sharing makes everyone happy.\"",
        ],
    );
    w.say(&[
        "{A} walked to {b} and said, \"I am sorry. Do you want to {verb} my {obj}?\"",
        "{A} gave the {obj} to {b}. \"You can have a turn,\" {a_he} said.",
        "\"Let's {verb} it together,\" said {a}.",
    ]);
    w.say(&[
        "{B} smiled a big smile. \"Thank you, {a}!\"",
        "{B} was {happy}. They took turns and laughed.",
        "{B} jumped up. \"Yes!\" {b_he} said.",
    ]);
    ending(
        w,
        &[
            "{A} learned that sharing is more fun than playing alone.",
            "Playing together was much more fun. {A} was glad {a_he} shared.",
            "{A} learned that when you share, everyone is happy.",
        ],
    );
}

fn broken(w: &mut Writer) {
    go_out(w, true);
    w.say(&[
        "{B} wanted to look at the {obj}. But {b_he} dropped it, and it broke!",
        "They played with the {obj}, but {b} pulled too hard. Snap! The {obj} broke.",
        "{B} was not careful, and the {obj} fell and broke into two pieces.",
    ]);
    w.say(&[
        "{A} was {sad} and angry. \"You broke my {obj}!\" {a_he} shouted.",
        "{A} started to cry. \"My {obj}!\" {a_he} said.",
        "{A} looked at the broken {obj}. {A_he} felt very {sad}.",
    ]);
    w.say(&[
        "\"I am sorry, {a},\" said {b}. \"I did not mean to.\"",
        "{B} said, \"I am so sorry. It was an accident.\"",
        "{B} felt bad too. \"Sorry,\" {b_he} said quietly.",
    ]);
    w.paragraph();
    w.say(&[
        "They took the {obj} home to {h}.",
        "{H} saw them and came over. \"Let me see,\" {h_he} said.",
        "They asked {h} if {h_he} could help.",
    ]);
    w.say(&[
        "{H} got some glue and fixed the {obj}. It looked almost new.",
        "{H} helped them fix it with tape and glue.",
        "{H} said, \"We can fix it together.\" And they did.",
    ]);
    w.say(&[
        "{A} looked at {b}. \"It is okay,\" {a_he} said. \"I know it was an accident.\"",
        "{A} hugged {b}. \"I am not angry anymore,\" {a_he} said.",
        "{A} smiled at {b}. They were friends again.",
    ]);
    ending(
        w,
        &[
            "{A} learned that friends are more important than toys.",
            "{A} and {b} learned to be careful, and to forgive each other.",
            "Now the {obj} was fixed, and {a} and {b} were {happy}.",
        ],
    );
}

const FEARS: &[(&str, &str, &str)] = &[
    // (what, how it appears, what it turned out to be)
    (
        "a big dog",
        "A big dog ran toward them and barked loudly.",
        "The dog just wanted to play. It wagged its tail and licked {a_his} hand.",
    ),
    (
        "the dark",
        "The sun went down, and it got dark. {A} heard a strange sound in the bushes.",
        "It was only a little hedgehog looking for food.",
    ),
    (
        "the loud thunder",
        "Dark clouds came, and there was a loud boom of thunder.",
        "The rain stopped soon, and a big rainbow came out.",
    ),
    (
        "a big shadow",
        "A big shadow moved behind the trees.",
        "It was only a tall horse eating grass.",
    ),
];

fn fear(w: &mut Writer) {
    let (what, appear, turned) = *pick(w.rng, FEARS);
    w.ctx.set("fear", what);
    go_out(w, true);
    w.say(&[appear]);
    w.say(&[
        "{A} was scared of {fear}. {A_he} hid behind {b}.",
        "{A} felt scared. \"I want to go home,\" {a_he} said.",
        "{A} did not like {fear}. {A_his} legs were shaking.",
    ]);
    w.paragraph();
    w.say(&[
        "{B} held {a_his} hand. \"Don't be scared,\" {b_he} said. \"I am here.\"",
        "\"It is okay,\" said {b}. \"Let's be brave together.\"",
        "{B} said, \"We can look together. Then you will see.\"",
    ]);
    w.maybe(
        0.5,
        &[
            "{H} came and said, \"There is nothing to be afraid of, {a}.\"",
            "{A} remembered what {h} said: \"Being brave means trying even when you are scared.\"",
        ],
    );
    w.say(&[
        "{A} took a deep breath and looked.",
        "Slowly, {a} stepped forward.",
        "{A} was still a little scared, but {a_he} looked.",
    ]);
    w.say(&[turned]);
    ending(
        w,
        &[
            "{A} laughed. {A_he} was not scared of {fear} anymore.",
            "{A} felt brave and proud. \"That was not so scary,\" {a_he} said.",
            "{A} learned that things are not always as scary as they seem.",
        ],
    );
}

const IN_NEED: &[(&str, &str, &str)] = &[
    // (who, the trouble, the happy ending)
    (
        "a baby bird",
        "It had fallen out of its nest.",
        "They put the baby bird back in its nest, and its mother sang a happy song.",
    ),
    (
        "a little kitten",
        "It was lost and could not find its home.",
        "They found the kitten's home, and the kitten's owner was so happy.",
    ),
    (
        "a small turtle",
        "It was on its back and could not turn over.",
        "They turned the turtle over, and it walked slowly back to the water.",
    ),
    (
        "a tiny duckling",
        "It could not find its mother.",
        "They found the mother duck by the water, and the duckling swam to her.",
    ),
];

fn rescue(w: &mut Writer) {
    let (who, trouble, saved) = *pick(w.rng, IN_NEED);
    w.ctx.set("who", who);
    go_out(w, true);
    w.say(&[
        "Then {a} heard a small sound. It was {who}!",
        "Near the path, {a} saw {who}.",
        "Suddenly, {b} stopped. \"Look!\" {b_he} said. There was {who}.",
    ]);
    w.say(&[trouble]);
    w.say(&[
        "\"We have to help it,\" said {a}.",
        "{A} felt {sad} for it. \"Poor thing,\" {a_he} said.",
        "{A} and {b} looked at each other. They wanted to help.",
    ]);
    w.paragraph();
    w.say(&[
        "They asked {h} what to do. {H} said, \"Be gentle, and help it go home.\"",
        "{A} was very gentle. {A_he} picked it up with care.",
        "{B} said, \"Let's help it together.\"",
    ]);
    w.say(&[saved]);
    ending(
        w,
        &[
            "{A} felt proud. Helping others made {a_him} feel warm inside.",
            "{A} and {b} were {happy}. They had helped a friend in need.",
            "{A} learned that it is good to help those who are small and weak.",
        ],
    );
}

fn new_friend(w: &mut Writer) {
    // A third child (or animal) who becomes the new friend, with its own name and pronouns.
    let hero = w.ctx.vars["a"].clone();
    let old_friend = w.ctx.vars["b"].clone();
    let animal_world = !w.ctx.vars["a_kind"].contains("boy") && !w.ctx.vars["a_kind"].contains("girl");
    let newcomer = loop {
        let c = if animal_world {
            animal(w.rng, &hero)
        } else {
            child(w.rng, &hero)
        };
        if c.name != old_friend {
            break c;
        }
    };
    w.ctx.set_character("n", &newcomer);
    w.say(&[
        "{Opener}, {a} went to {place} with {a_his} {obj}. {B} was not there, and {a} was a little lonely.",
        "{Opener}, {a} was at {place}, playing alone with {a_his} {obj}.",
    ]);
    w.maybe(
        0.5,
        &["At {place}, there were {sights}.", "{Place} had {sights}."],
    );
    w.say(&[
        "Then {a} saw a {n_kind} sitting alone.",
        "Then {a_he} saw a new {n_kind} near the trees.",
    ]);
    w.say(&[
        "The {n_kind} looked shy. {A} wanted to say hello, but {a_he} was shy too.",
        "The {n_kind} looked {sad}. Nobody was playing with {n_him}.",
    ]);
    w.paragraph();
    w.say(&[
        "{A} walked over and said, \"Hi! I am {a}. Do you want to play with my {obj}?\"",
        "{A} took a deep breath. \"Hello,\" {a_he} said. \"Do you want to play?\"",
    ]);
    w.say(&[
        "The {n_kind} smiled. \"Yes, please! My name is {n},\" {n_he} said.",
        "The {n_kind} was surprised, and then {n_he} smiled. \"I am {n}. I would like that,\" {n_he} said.",
    ]);
    w.say(&[
        "{A} and {n} played with the {obj} and laughed a lot.",
        "{A} and {n} took turns with the {obj}. They ran and played all afternoon.",
        "{N} was good at games. {N_he} and {a} played until it was time to go home.",
    ]);
    w.paragraph();
    w.say(&[
        "{A} made a new friend that day. {A_he} was {happy}.",
        "{A} learned that saying hello can make a new friend.",
        "Now {a} had two good friends: {b} and {n}.",
    ]);
    w.maybe(
        0.6,
        &[
            "The next day, {a} brought {n} to meet {b}, and the three of them played together.",
            "That night, {a} told {h} all about {a_his} new friend {n}.",
        ],
    );
}

const GIFTS: &[(&str, &str, &str)] = &[
    // (the gift, the mishap, the fix)
    (
        "a cake",
        "But {a} dropped the flour, and the kitchen was a big mess!",
        "{B} helped clean up, and they made the cake again.",
    ),
    (
        "a picture",
        "But {a} spilled water on the picture, and the colors ran.",
        "So {a} painted a new picture, even better than before.",
    ),
    (
        "a card",
        "But the wind blew the card away!",
        "{B} ran fast and caught the card before it flew too far.",
    ),
    (
        "a necklace of flowers",
        "But the string broke, and the flowers fell on the ground.",
        "{B} found a new string, and they picked more flowers.",
    ),
];

fn gift(w: &mut Writer) {
    let (g, mishap, fix) = *pick(w.rng, GIFTS);
    w.ctx.set("gift", g);
    w.ctx
        .set("gift_noun", g.split_once(' ').map_or(g, |(_, noun)| noun));
    w.say(&[
        "{Opener}, {a} had an idea. It was {h}'s birthday soon, and {a} wanted to make {gift}.",
        "It was almost {h}'s birthday. {A} wanted to give {h_him} something special, so {a_he} decided to make {gift}.",
    ]);
    w.say(&[
        "{A} asked {b} to help. \"Yes!\" said {b}. \"It will be a surprise.\"",
        "{B} came over to help. They worked hard together.",
    ]);
    w.paragraph();
    w.say(&[mishap]);
    w.say(&[
        "{A} was {sad}. \"Now it is ruined,\" {a_he} said.",
        "\"Oh no!\" cried {a}. {A_he} wanted to give up.",
    ]);
    w.say(&[
        "\"Don't give up,\" said {b}. \"We can try again.\"",
        "{B} said, \"It is okay. Let's try one more time.\"",
    ]);
    w.say(&[fix]);
    w.paragraph();
    w.say(&[
        "When {h} saw the {gift_noun}, {h_he} smiled a big smile. \"Thank you, {a}! I love it!\"",
        "{A} gave the {gift_noun} to {h}. {H} hugged {a_him} and said, \"This is the best gift ever!\"",
    ]);
    ending(
        w,
        &[
            "{A} learned that a gift made with love is the best gift of all.",
            "{A} was {happy}. Trying again was worth it.",
            "{A} learned to never give up, even when things go wrong.",
        ],
    );
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

/// Entropy, in nats per token, of the unigram (single-token frequency) distribution of `tokens`:
/// −Σ p·ln p over the token ids' relative frequencies. It is the loss of the best model that
/// ignores context, so a language model that learned anything has a lower loss. 0 for an empty
/// sequence.
pub fn unigram_entropy(tokens: &[u32]) -> f64 {
    if tokens.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for &t in tokens {
        *counts.entry(t).or_insert(0) += 1;
    }
    let n = tokens.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Cross-entropy, in nats per token, of a unigram model fit on `train` (add-one smoothing over
/// `vocab_size` ids) evaluated on `valid`: the held-out loss of the best context-free model, the
/// fair baseline for a validation loss.
pub fn unigram_cross_entropy(train: &[u32], valid: &[u32], vocab_size: usize) -> f64 {
    if valid.is_empty() {
        return 0.0;
    }
    let mut counts = vec![0u64; vocab_size];
    for &t in train {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
        }
    }
    let total = train.len() as f64 + vocab_size as f64;
    let nll: f64 = valid
        .iter()
        .map(|&t| {
            let c = counts.get(t as usize).copied().unwrap_or(0) as f64 + 1.0;
            -(c / total).ln()
        })
        .sum();
    nll / valid.len() as f64
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

    #[test]
    fn unigram_entropy_matches_hand_computed_values() {
        assert_eq!(unigram_entropy(&[]), 0.0);
        assert_eq!(unigram_entropy(&[5, 5, 5]), 0.0);
        let h = unigram_entropy(&[1, 2, 1, 2]);
        assert!((h - 2f64.ln()).abs() < 1e-12);
        let h = unigram_entropy(&[0, 1, 2, 3, 0, 1, 2, 3]);
        assert!((h - 4f64.ln()).abs() < 1e-12);
        // p = (1/2, 1/4, 1/4): H = ½ln2 + ½ln4 = 1.5 ln 2.
        let h = unigram_entropy(&[7, 7, 8, 9]);
        assert!((h - 1.5 * 2f64.ln()).abs() < 1e-12);
        // Cross-entropy of a smoothed unigram on its own data is at least the entropy.
        let toks: Vec<u32> = (0..1000).map(|i| (i * i % 17) as u32).collect();
        assert!(unigram_cross_entropy(&toks, &toks, 17) >= unigram_entropy(&toks) - 1e-12);
    }
}
