//! The crate's error type: bad shapes, ids out of range, configs that do not fit.

/// Errors of the math crate: bad shapes, ids out of range, configs that do not fit.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("target id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TargetOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("invalid model config: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, NnError>;
