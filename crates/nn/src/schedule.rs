//! Learning-rate schedule: linear warmup, cosine decay, then constant minimum.
//!
//! API CONTRACT (stub).

/// t < Tw: t/Tw·max; Tw ≤ t ≤ Tc: min + ½(1+cos(π(t−Tw)/(Tc−Tw)))(max−min); t > Tc: min.
pub fn lr_cosine(t: u64, max_lr: f32, min_lr: f32, warmup_iters: u64, cosine_cycle_iters: u64) -> f32 {
    let _ = (t, max_lr, min_lr, warmup_iters, cosine_cycle_iters);
    todo!()
}
