//! Learning-rate schedule: linear warmup, cosine decay, then constant minimum.

/// The learning rate at step `t` (0-based):
/// - `t < Tw`: `t/Tw · max_lr` (linear warmup from 0);
/// - `Tw ≤ t ≤ Tc`: `min + ½(1 + cos(π(t − Tw)/(Tc − Tw)))(max − min)`;
/// - `t > Tc`: `min_lr`.
///
/// Computed in f64 and rounded once to f32. Degenerate cycles are handled without dividing by
/// zero: with `Tc ≤ Tw` the cosine phase is empty (or the single point `t = Tw = Tc`, which gives
/// `max_lr`), so the schedule goes from warmup straight to `min_lr`.
pub fn lr_cosine(t: u64, max_lr: f32, min_lr: f32, warmup_iters: u64, cosine_cycle_iters: u64) -> f32 {
    let (max, min) = (max_lr as f64, min_lr as f64);
    let lr = if t < warmup_iters {
        t as f64 / warmup_iters as f64 * max
    } else if t <= cosine_cycle_iters {
        if cosine_cycle_iters == warmup_iters {
            max
        } else {
            let progress = (t - warmup_iters) as f64 / (cosine_cycle_iters - warmup_iters) as f64;
            min + 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()) * (max - min)
        }
    } else {
        min
    };
    lr as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_linear_from_zero() {
        assert_eq!(lr_cosine(0, 1.0, 0.1, 10, 100), 0.0);
        assert!((lr_cosine(5, 1.0, 0.1, 10, 100) - 0.5).abs() < 1e-7);
        assert!((lr_cosine(9, 2.0, 0.1, 10, 100) - 1.8).abs() < 1e-6);
    }

    #[test]
    fn cosine_phase_endpoints_and_midpoint() {
        // t = Tw: cos(0) = 1 → max; t = Tc: cos(π) = −1 → min; midway: (max + min)/2.
        assert!((lr_cosine(10, 1.0, 0.1, 10, 110) - 1.0).abs() < 1e-7);
        assert!((lr_cosine(110, 1.0, 0.1, 10, 110) - 0.1).abs() < 1e-7);
        assert!((lr_cosine(60, 1.0, 0.1, 10, 110) - 0.55).abs() < 1e-7);
        // A quarter of the way: min + ½(1 + cos(π/4))(max − min).
        let q = 0.1 + 0.5 * (1.0 + (std::f64::consts::FRAC_PI_4).cos()) * 0.9;
        assert!((lr_cosine(35, 1.0, 0.1, 10, 110) as f64 - q).abs() < 1e-7);
    }

    #[test]
    fn after_the_cycle_it_stays_at_min_and_is_monotone_in_the_cycle() {
        for t in [111, 200, u64::MAX] {
            assert_eq!(lr_cosine(t, 1.0, 0.1, 10, 110), 0.1);
        }
        let mut prev = f32::INFINITY;
        for t in 10..=110 {
            let lr = lr_cosine(t, 1.0, 0.1, 10, 110);
            assert!(lr <= prev && (0.1..=1.0).contains(&lr), "t {t} lr {lr}");
            prev = lr;
        }
    }

    #[test]
    fn degenerate_schedules_are_finite() {
        // No warmup: starts at max.
        assert_eq!(lr_cosine(0, 1.0, 0.1, 0, 100), 1.0);
        // Tw = Tc: warmup then the single point max, then min; no division by zero.
        assert_eq!(lr_cosine(10, 1.0, 0.1, 10, 10), 1.0);
        assert_eq!(lr_cosine(11, 1.0, 0.1, 10, 10), 0.1);
        // Tc < Tw: warmup then min.
        assert!((lr_cosine(4, 1.0, 0.1, 8, 5) - 0.5).abs() < 1e-7);
        assert_eq!(lr_cosine(8, 1.0, 0.1, 8, 5), 0.1);
        assert_eq!(lr_cosine(0, 1.0, 0.1, 0, 0), 1.0);
        assert_eq!(lr_cosine(1, 1.0, 0.1, 0, 0), 0.1);
    }
}
