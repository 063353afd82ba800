//! Benchmark-only code, outside the model's path: this machine's arithmetic peak (`peak`) and
//! the per-kernel wall time of real training steps (`profile`, reading the lap hook
//! `ops::laps` that the training forward/backward calls).

pub mod peak;
pub mod profile;
