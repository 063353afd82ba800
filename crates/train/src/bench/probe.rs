//! The only place the train crate reaches into the nn crate's machine and benchmark internals
//! (which GEMM runs, the measured peak, the per-kernel laps): when nn moves them, only this file
//! changes.

pub use ferrolm_nn::bench::peak::Bf16Unit;
pub use ferrolm_nn::bench::profile::{Lap, Laps};

/// Whether the f32 matmuls run on the AMX tiles (else on the FMA GEMM).
pub fn f32_matmuls_on_amx() -> bool {
    ferrolm_nn::cpu::simd::f32_on_amx()
}

/// The f32 multiply-add peak of the current rayon pool, FLOP/s, measured for about `seconds`.
pub fn f32_peak(seconds: f64) -> f64 {
    ferrolm_nn::bench::peak::f32_peak(seconds)
}

/// The bf16 multiply-add peak (f32 sums), FLOP/s, and the unit measured; None without one.
pub fn bf16_peak(seconds: f64) -> Option<(Bf16Unit, f64)> {
    ferrolm_nn::bench::peak::bf16_peak(seconds)
}

/// Turns the per-kernel laps on or off for passes started afterwards.
pub fn set_profiling(on: bool) {
    ferrolm_nn::bench::profile::set_enabled(on)
}

/// The laps recorded so far, and resets them.
pub fn take_laps() -> Vec<Lap> {
    ferrolm_nn::bench::profile::take()
}
