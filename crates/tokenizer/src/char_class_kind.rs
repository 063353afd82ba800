//! The character classes of the GPT-2 pre-tokenization pattern (its own module so that the
//! generated table and the classifier both import it, and neither imports the other).

/// The class of a character for pre-tokenization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharClass {
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\s`.
    Space,
    /// Everything else (`[^\s\p{L}\p{N}]`).
    Other,
}
