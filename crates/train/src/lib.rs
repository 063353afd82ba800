//! The training system (see issue 4).
