//! The training system (see issue 4): token data, checkpoints, the training loop, metrics,
//! generation, and the built-in quickstart corpus.

pub mod stories;
pub mod quickstart;
