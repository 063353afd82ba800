//! Intel AMX (Advanced Matrix Extensions) for the bf16 GEMM: the 32×32 tile microkernel (the
//! detection and Linux's permission request are `simd::amx`).
//!
//! A tile is a 16-row × 64-byte register; `tdpbf16ps` multiplies a 16×32 bf16 tile A by a 32×16
//! bf16 tile B stored in "VNNI" order (16 rows of k-pairs: row q holds, for each of the 16
//! columns, the two bf16 values at k = 2q and 2q + 1) and adds the 16×16 f32 product into a third
//! tile, 16·16·32 multiply-adds per instruction. The tile registers are invisible to the compiler
//! (no code it generates touches them), so their contents persist from one `asm!` block to the
//! next within a thread; every use is bracketed by `TileGuard` (configure, then release).

use super::microkernel::{CBlock, Panels};

/// Bytes in one packed bf16 tile (16 rows × 64 bytes).
pub const TILE_BYTES: usize = 1024;
/// bf16 elements in one packed tile.
pub const TILE_ELEMS: usize = TILE_BYTES / 2;

/// The tile configuration: palette 1, all eight tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Tiles configured on this thread for as long as it lives; released on drop. Only made when
/// `crate::cpu::simd::amx()` is true.
pub struct TileGuard(());

impl TileGuard {
    /// Configures the tiles. Panics if `crate::cpu::simd::amx()` is false (hence no `Default`).
    #[allow(clippy::new_without_default)]
    pub fn new() -> TileGuard {
        assert!(crate::cpu::simd::amx(), "AMX is not available on this machine");
        let mut cfg = TileConfig([0; 64]);
        cfg.0[0] = 1; // palette 1
        for t in 0..8 {
            cfg.0[16 + 2 * t] = 64; // bytes per row (u16 little endian)
            cfg.0[48 + t] = 16; // rows
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: crate::cpu::simd::amx() proved the CPU has AMX and the OS allows its state; the 64-byte
        // config is valid for palette 1 (at most 16 rows of at most 64 bytes per tile).
        unsafe {
            std::arch::asm!("ldtilecfg [{cfg}]", cfg = in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        }
        TileGuard(())
    }

    /// `C (32×32 f32) = [C +] A · B` over the k-tiles of the panels (`Panels`); C is the block
    /// `c` (`CBlock`: read first when `c.load`).
    ///
    /// # Safety
    /// Each of the four panels must hold `ktiles · TILE_ELEMS` elements, and `c.ptr` must be valid
    /// for reads and writes of 32 rows × 32 f32 at stride `c.stride`.
    #[inline]
    pub unsafe fn kernel_32x32(&self, p: Panels, c: CBlock) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::asm;
            let ([a0, a1], [b0, b1], ktiles) = (p.a, p.b, p.ktiles);
            // SAFETY (all blocks): the caller guarantees the panels and C are in bounds; the tiles
            // were configured by `new` (this guard exists) and no other code uses them.
            // Tile loads wait for the tiles' previous readers (no renaming), so L2 latency is not
            // hidden by out-of-order execution: prefetch the tiles two k-steps ahead into L1
            // (measured 10-25% faster over the model's matmul shapes).
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            self.on_c_block(c, ktiles, |t| {
                let off = t * TILE_ELEMS;
                if t + 2 < ktiles {
                    for p in [a0, a1, b0, b1] {
                        let next = p.add(off + 2 * TILE_ELEMS) as *const i8;
                        for line in 0..16 {
                            _mm_prefetch::<_MM_HINT_T0>(next.add(64 * line));
                        }
                    }
                }
                asm!(
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm6, [{b0} + {s}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {s}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {s}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(off), a1 = in(reg) a1.add(off),
                    b0 = in(reg) b0.add(off), b1 = in(reg) b1.add(off),
                    s = in(reg) 64usize, options(nostack, readonly),
                );
            });
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (p, c);
            unreachable!("AMX exists only on x86_64");
        }
    }
}

/// The asm of four tile products of the A pair in tmm4 (rows 0..16) and tmm5 (rows 16..32) with
/// the B pair at the operands named `$b0`, `$b1` (columns 0..16, 16..32) into the accumulators
/// tmm0..tmm3, through tmm6 and tmm7.
macro_rules! b_pair_products {
    ($b0:literal, $b1:literal) => {
        concat!(
            "tileloadd tmm6, [{",
            $b0,
            "} + {s}*1]\n",
            "tdpbf16ps tmm0, tmm4, tmm6\n",
            "tdpbf16ps tmm2, tmm5, tmm6\n",
            "tileloadd tmm7, [{",
            $b1,
            "} + {s}*1]\n",
            "tdpbf16ps tmm1, tmm4, tmm7\n",
            "tdpbf16ps tmm3, tmm5, tmm7",
        )
    };
}

impl TileGuard {
    /// The f32-accurate product from three-term bf16 splits (`pack_bf16::split_part`): with
    /// A = Ah + Am + Al and B = Bh + Bm + Bl, `C (32×32 f32) = [C +] Ah·Bh + Ah·Bm + Am·Bh +
    /// Ah·Bl + Am·Bm + Al·Bh`; the three products left out are below 2⁻²⁴ of |A|·|B| (f32's own
    /// rounding), and every bf16 product is exact in the f32 sums. Panels as in `kernel_32x32`
    /// for the h terms; term t of an A panel is `t · a_part` elements after it, of a B panel
    /// `t · b_part`. 24 tile products per k-tile on four accumulators, 18 tile loads.
    ///
    /// # Safety
    /// As `kernel_32x32`, for each of the three terms of every panel.
    #[inline]
    pub unsafe fn kernel_32x32_split(&self, p: Panels, (a_part, b_part): (usize, usize), c: CBlock) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::asm;
            let ([a0, a1], [b0, b1], ktiles) = (p.a, p.b, p.ktiles);
            self.on_c_block(c, ktiles, |t| {
                let off = t * TILE_ELEMS;
                let (a0, a1, b0, b1) = (a0.add(off), a1.add(off), b0.add(off), b1.add(off));
                let (b0m, b1m) = (b0.add(b_part), b1.add(b_part));
                // SAFETY (all three): the caller bounds every term of every panel; the tiles
                // were configured by `new` (this guard exists) and no other code uses them.
                // Ah against Bh, Bm, Bl.
                asm!(
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm5, [{a1} + {s}*1]",
                    b_pair_products!("b0", "b1"),
                    b_pair_products!("b0m", "b1m"),
                    b_pair_products!("b0l", "b1l"),
                    a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1,
                    b0m = in(reg) b0m, b1m = in(reg) b1m,
                    b0l = in(reg) b0m.add(b_part), b1l = in(reg) b1m.add(b_part),
                    s = in(reg) 64usize, options(nostack, readonly),
                );
                // Am against Bh, Bm.
                asm!(
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm5, [{a1} + {s}*1]",
                    b_pair_products!("b0", "b1"),
                    b_pair_products!("b0m", "b1m"),
                    a0 = in(reg) a0.add(a_part), a1 = in(reg) a1.add(a_part),
                    b0 = in(reg) b0, b1 = in(reg) b1, b0m = in(reg) b0m, b1m = in(reg) b1m,
                    s = in(reg) 64usize, options(nostack, readonly),
                );
                // Al against Bh.
                asm!(
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm5, [{a1} + {s}*1]",
                    b_pair_products!("b0", "b1"),
                    a0 = in(reg) a0.add(2 * a_part), a1 = in(reg) a1.add(2 * a_part),
                    b0 = in(reg) b0, b1 = in(reg) b1,
                    s = in(reg) 64usize, options(nostack, readonly),
                );
            });
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (p, a_part, b_part, c);
            unreachable!("AMX exists only on x86_64");
        }
    }

    /// Runs `k_tile(t)` for each k-tile t in 0..ktiles on the accumulator tiles tmm0..tmm3,
    /// which hold C's block: loaded from `c` before (zeroed when not `c.load`), stored after.
    ///
    /// # Safety
    /// `c.ptr` valid for reads (when `c.load`) and writes of 32 rows × 32 f32 at stride
    /// `c.stride`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn on_c_block(&self, c: CBlock, ktiles: usize, mut k_tile: impl FnMut(usize)) {
        self.load_c_32x32(c.ptr, c.stride, c.load);
        for t in 0..ktiles {
            k_tile(t);
        }
        self.store_c_32x32(c.ptr, c.stride);
    }

    /// Loads the 32×32 block of C at `c` (row stride `c_stride` f32) into the accumulator tiles
    /// 0..4 when `load_c`, else zeroes them.
    ///
    /// # Safety
    /// `c` valid for reads of 32 rows × 32 f32 at stride `c_stride` when `load_c`.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn load_c_32x32(&self, c: *const f32, c_stride: usize, load_c: bool) {
        use std::arch::asm;
        let cs = c_stride * 4; // bytes
                               // SAFETY: the caller bounds C; the tiles are configured (this guard exists).
        if load_c {
            asm!(
                "tileloadd tmm0, [{c00} + {cs}*1]",
                "tileloadd tmm1, [{c01} + {cs}*1]",
                "tileloadd tmm2, [{c10} + {cs}*1]",
                "tileloadd tmm3, [{c11} + {cs}*1]",
                c00 = in(reg) c, c01 = in(reg) c.add(16), c10 = in(reg) c.add(16 * c_stride),
                c11 = in(reg) c.add(16 * c_stride + 16), cs = in(reg) cs, options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
    }

    /// Stores the accumulator tiles 0..4 into the 32×32 block of C at `c`.
    ///
    /// # Safety
    /// `c` valid for writes of 32 rows × 32 f32 at stride `c_stride`.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn store_c_32x32(&self, c: *mut f32, c_stride: usize) {
        use std::arch::asm;
        let cs = c_stride * 4; // bytes
                               // SAFETY: the caller bounds C; the tiles are configured (this guard exists).
        asm!(
            "tilestored [{c00} + {cs}*1], tmm0",
            "tilestored [{c01} + {cs}*1], tmm1",
            "tilestored [{c10} + {cs}*1], tmm2",
            "tilestored [{c11} + {cs}*1], tmm3",
            c00 = in(reg) c, c01 = in(reg) c.add(16), c10 = in(reg) c.add(16 * c_stride),
            c11 = in(reg) c.add(16 * c_stride + 16), cs = in(reg) cs, options(nostack),
        );
    }
}

impl TileGuard {
    /// The throughput loop behind `peak::bf16_peak`: `iters` × four independent 16×16×32 tile
    /// products of all-ones bf16 tiles into four zeroed accumulators, no memory traffic inside
    /// the loop. Returns one element of the first accumulator, 32 · iters (exact while below 2²⁴).
    pub fn peak_loop(&self, iters: u64) -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            let ones = [0x3F80u16; TILE_ELEMS]; // bf16 1.0
            let mut out = [0.0f32; 256];
            // SAFETY: the tiles are configured (this guard exists) as 16 rows × 64 bytes; `ones`
            // holds one tile (16 rows of 64 bytes at stride 64) and `out` 16 rows of 16 f32.
            unsafe {
                std::arch::asm!(
                    "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    "tileloadd tmm4, [{p} + {s}*1]", "tileloadd tmm5, [{p} + {s}*1]",
                    "tileloadd tmm6, [{p} + {s}*1]", "tileloadd tmm7, [{p} + {s}*1]",
                    p = in(reg) ones.as_ptr(), s = in(reg) 64usize, options(nostack, readonly),
                );
                for _ in 0..iters {
                    std::arch::asm!(
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        options(nostack, nomem),
                    );
                }
                std::arch::asm!(
                    "tilestored [{p} + {s}*1], tmm0",
                    p = in(reg) out.as_mut_ptr(), s = in(reg) 64usize, options(nostack),
                );
            }
            out[0]
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = iters;
            unreachable!("AMX exists only on x86_64");
        }
    }
}

impl Drop for TileGuard {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: tilerelease only returns the tile state to its initial (unused) state.
        unsafe {
            std::arch::asm!("tilerelease", options(nostack, nomem));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_loop_runs_every_product() {
        if !crate::cpu::simd::runs_here(crate::cpu::simd::amx(), "AMX") {
            return;
        }
        let tiles = TileGuard::new();
        assert_eq!(tiles.peak_loop(0), 0.0);
        assert_eq!(tiles.peak_loop(7), 7.0 * 32.0);
    }
}
