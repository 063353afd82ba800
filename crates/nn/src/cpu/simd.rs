//! Machine support for the CPU kernels: which SIMD units this CPU has (AVX2+FMA, AVX-512,
//! AVX-512 BF16, AMX), the environment overrides of the GEMM choices (FERROLM_BF16_KERNEL,
//! FERROLM_NO_AMX, FERROLM_F32_GEMM), the `dispatch!` macro behind every run-time
//! `target_feature` choice, and the f32 ↔ bf16 conversions.
//!
//! Everything here is decided at run time: the baseline x86-64 build only has SSE2, so each
//! kernel that benefits from a wider unit is compiled again with that unit enabled and picked
//! here, always with a portable fallback.

/// Whether the CPU has AVX-512F (cached by the standard library after the first call).
#[inline(always)]
pub fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has AVX-512 F, BW and VL (the matrix-vector kernels' masked bf16 loads).
#[inline(always)]
pub fn avx512_bw_vl() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has AVX-512 F, BW and BF16: the bf16 packers (`gemm::pack_bf16`) and the
/// `vdpbf16ps` microkernel (`gemm::dpbf16`) can run.
pub fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the bf16 dot-product kernel should beat the f32 gemm here: on AMD Zen 4 `vdpbf16ps`
/// runs at twice the f32 FMA rate (issue 5 measured 467 vs 233 GFLOP/s). On Intel it does not
/// (measured on Sapphire Rapids: ~0.5x the f32 gemm), and Intel CPUs with AMX use the tiles anyway.
pub fn avx512_bf16_preferred() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let v = std::arch::x86_64::__cpuid_count(0, 0);
        let vendor: Vec<u8> = [v.ebx, v.edx, v.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        avx512_bf16() && vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this process can use AMX-BF16: the CPU reports AMX-TILE and AMX-BF16 (CPUID leaf 7)
/// and Linux granted the tile-data state (arch_prctl ARCH_REQ_XCOMP_PERM). Decided once per
/// process.
pub fn amx() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // The packers convert with AVX-512 BF16, which every AMX CPU has; check anyway.
    *AVAILABLE.get_or_init(|| amx_detect() && avx512_bf16())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn amx_detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // CPUID exists on every x86_64 CPU (a safe intrinsic); leaf 0 reports the highest leaf.
    let (max_leaf, leaf7) = (__cpuid_count(0, 0).eax, __cpuid_count(7, 0));
    let amx_bf16 = leaf7.edx >> 22 & 1 == 1;
    let amx_tile = leaf7.edx >> 24 & 1 == 1;
    if max_leaf < 7 || !amx_bf16 || !amx_tile {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) takes two integers and only extends the
    // set of xsave features this process may use; it fails (and we fall back) on kernels < 5.16.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn amx_detect() -> bool {
    false
}

/// The kernel bf16 products run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AMX tiles (`tdpbf16ps`).
    Amx,
    /// AVX-512 BF16 (`vdpbf16ps`).
    Avx512Bf16,
    /// Operands rounded to bf16 in f32 copies, f32 gemm.
    Emulated,
}

impl Bf16Kernel {
    /// Whether this machine can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Bf16Kernel::Amx => amx(),
            Bf16Kernel::Avx512Bf16 => avx512_bf16(),
            Bf16Kernel::Emulated => true,
        }
    }
}

/// The bf16 kernel of this machine, decided once: AMX where available, AVX-512 BF16 where it
/// beats the f32 gemm (AMD Zen 4, `avx512_bf16_preferred`), else emulated. The environment can
/// pick another available one (to compare or to test): FERROLM_BF16_KERNEL=amx|avx512|emulated;
/// FERROLM_NO_AMX=1 skips AMX.
pub fn bf16_kernel() -> Bf16Kernel {
    static KERNEL: std::sync::OnceLock<Bf16Kernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        let asked = match env("FERROLM_BF16_KERNEL").as_str() {
            "amx" => Some(Bf16Kernel::Amx),
            "avx512" => Some(Bf16Kernel::Avx512Bf16),
            "emulated" => Some(Bf16Kernel::Emulated),
            _ => None,
        };
        if let Some(k) = asked.filter(|k| k.available()) {
            return k;
        }
        if Bf16Kernel::Amx.available() && matches!(env("FERROLM_NO_AMX").as_str(), "" | "0") {
            Bf16Kernel::Amx
        } else if avx512_bf16_preferred() {
            Bf16Kernel::Avx512Bf16
        } else {
            Bf16Kernel::Emulated
        }
    })
}

/// Whether f32 products run on the AMX tiles (`gemm::f32_amx`): AMX is available and the
/// environment does not ask for the FMA GEMM (FERROLM_F32_GEMM=fma). Decided once per process.
pub fn f32_on_amx() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        let fma = std::env::var("FERROLM_F32_GEMM").is_ok_and(|v| v == "fma");
        amx() && !fma
    })
}

/// f32 → bf16 with round-to-nearest-even (what `half` and PyTorch do), as its 16 bits; NaN stays
/// a (quiet) NaN, ±inf stays ±inf, values past the largest bf16 round to ±inf.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// bf16 → f32 (exact: bf16 is the high half of an f32).
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// `x` rounded to bf16 and widened back to f32.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    bf16_to_f32(f32_to_bf16(x))
}

/// Defines `$vis fn $name` dispatching at run time to copies of `$body` compiled for the listed
/// units, else the portable copy:
/// - `= body` : AVX-512F, then AVX2+FMA, then portable (the elementwise row kernels);
/// - `= body; avx512f` : AVX-512F, then portable.
///
/// Each copy is the same safe Rust body, so every copy computes the same values (the compiler
/// vectorizes it wider; it never fuses or reorders f32 operations).
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident) => {
        $crate::cpu::simd::dispatch!(@def [$(#[$doc])* #[inline]] $vis $name($($arg: $ty),*) -> $ret = $body, true);
    };
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident; avx512f) => {
        $crate::cpu::simd::dispatch!(@def [$(#[$doc])*] $vis $name($($arg: $ty),*) -> $ret = $body, false);
    };
    (@def [$($attr:tt)*] $vis:vis $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident, $avx2:literal) => {
        $($attr)*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments, dead_code)]
                fn v3($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above), the only
                    // requirement for calling a function compiled with that target feature.
                    return unsafe { v4($($arg),*) };
                }
                if $avx2 && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { v3($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatch;

/// For tests of code that needs a CPU feature: whether the CPU has it (`has`); when not, says
/// that the test is skipped for want of `what`, so a skip shows in the output.
#[cfg(test)]
pub(crate) fn runs_here(has: bool, what: &str) -> bool {
    if !has {
        eprintln!("skipped: no {what} on this machine");
    }
    has
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even one (1.0).
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        // 1.0078125 + half an ulp: tie, rounds up to the even 1.015625.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(-2.5), 0xc020);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        for &v in &[0.1f32, -3.7, 1e-20, 6.5e4] {
            let r = bf16_to_f32(f32_to_bf16(v));
            assert!((r - v).abs() <= v.abs() / 256.0, "{v} {r}");
        }
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0 + 1e-6), 0x3f81);
        assert_eq!(f32_to_bf16(-2.0), 0xc000);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80); // rounds to infinity
        assert!(round_bf16(f32::NAN).is_nan());
        assert!(round_bf16(-f32::NAN).is_nan());
    }
}
