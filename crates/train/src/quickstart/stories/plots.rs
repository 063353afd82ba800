//! The stories' plots: each beat (beginning, going out, the problem, the ending) as several
//! sentence templates, for the lost object, the stuck object, sharing, the broken toy, the fear,
//! the animal in need, the new friend and the gift.

use super::cast::*;

/// The plots a story can follow.
#[derive(Clone, Copy, Debug)]
pub(super) enum Plot {
    Lost,
    Stuck,
    Sharing,
    Broken,
    Fear,
    Rescue,
    NewFriend,
    Gift,
}

pub(super) const PLOTS: &[Plot] = &[
    Plot::Lost,
    Plot::Stuck,
    Plot::Sharing,
    Plot::Broken,
    Plot::Fear,
    Plot::Rescue,
    Plot::NewFriend,
    Plot::Gift,
];

pub(super) fn beginning(w: &mut Writer) {
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
pub(super) fn go_out(w: &mut Writer, chatter: bool) {
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

pub(super) fn ending(w: &mut Writer, morals: &[&str]) {
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

pub(super) fn lost(w: &mut Writer) {
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

pub(super) fn stuck(w: &mut Writer) {
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

pub(super) fn sharing(w: &mut Writer) {
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

pub(super) fn broken(w: &mut Writer) {
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

pub(super) const FEARS: &[(&str, &str, &str)] = &[
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

pub(super) fn fear(w: &mut Writer) {
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

pub(super) const IN_NEED: &[(&str, &str, &str)] = &[
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

pub(super) fn rescue(w: &mut Writer) {
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

pub(super) fn new_friend(w: &mut Writer) {
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

pub(super) const GIFTS: &[(&str, &str, &str)] = &[
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

pub(super) fn gift(w: &mut Writer) {
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
