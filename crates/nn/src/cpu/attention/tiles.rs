//! Register-blocked products for causal attention's per-head matmuls. Each head's products are
//! small (seq ≤ a few hundred, d_head 32–64) and triangular, where the general `gemm` crate spends
//! most of its time packing and dispatching; here one AVX-512 microkernel computes MR×32 tiles of
//! `C = alpha · A · B` straight from the strided operands, and the caller says per row tile which
//! columns and which inner range are live, so the masked triangle is skipped at tile granularity.
//! On CPUs without AVX-512 the same tiles go through `gemm_strided`.

use crate::cpu::gemm::f32::gemm_strided;
use crate::cpu::gemm::transpose::transpose_strided;
use std::ops::Range;

/// Rows per register tile (MR·2 accumulators + 2 operand vectors fit the 32 zmm registers).
pub const MR: usize = 8;
/// Columns per register tile: two 16-lane vectors.
const NR: usize = 32;
/// Rows per `gemm_strided` call in the fallback without AVX-512.
const FALLBACK_ROWS: usize = 64;

/// A matrix operand read in place: element (r, k) at `data[r·rs + k·cs]`.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// Which code computes the tiles: the AVX-512 microkernel (MR-row tiles) or, on CPUs without
/// AVX-512 (and in tests), `gemm_strided` in tiles of FALLBACK_ROWS rows. The microkernel is
/// only chosen by `detect`, on a CPU that has AVX-512F.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    avx512: bool,
}

impl Tiles {
    /// The `gemm_strided` fallback.
    pub const FALLBACK: Tiles = Tiles { avx512: false };

    /// The microkernel where this CPU has AVX-512F, else the fallback.
    pub fn detect() -> Tiles {
        Tiles {
            avx512: cfg!(target_arch = "x86_64") && crate::cpu::simd::avx512f(),
        }
    }

    /// Rows per tile.
    fn rows(self) -> usize {
        if self.avx512 {
            MR
        } else {
            FALLBACK_ROWS
        }
    }

    /// For each row tile [i0, i1) of `rows` (tiles aligned to multiples of the tile height from
    /// row 0, so tiles of different calls over the same matrix line up) with
    /// `(n, k0, k1) = span(i0, i1)`: `c[i·ldc + j] = alpha · Σ_{k0 ≤ k < k1} a(i, k) · b[k·ldb + j]`
    /// for i in the tile, j < n, where `(c, ldc)` and `(b, ldb)` are row-major matrices with
    /// their row strides. OVERWRITES those entries (zeros where k0 == k1) and leaves every other
    /// entry of c untouched. `span` must give the same answer for a tile and for any tile
    /// containing it, widened to cover the union (the fallback calls it for wider tiles).
    pub fn gemm(
        self,
        (c, ldc): (&mut [f32], usize),
        rows: Range<usize>,
        a: Strided,
        (b, ldb): (&[f32], usize),
        alpha: f32,
        span: impl Fn(usize, usize) -> (usize, usize, usize),
    ) {
        for_each_tile(rows, self.rows(), span, |i0, i1, n, k0, k1| {
            check((c, ldc), i0..i1, a, (b, ldb), n, k0..k1);
            if n == 0 {
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if self.avx512 {
                for j0 in (0..n).step_by(NR) {
                    let w = (n - j0).min(NR);
                    // SAFETY: `avx512` is only set where the CPU has AVX-512F (`detect`).
                    // `check` proved that every element the tile reads, a[(i0+r)·rs + k·cs] and
                    // b[k·ldb + j] for r < i1−i0, k0 ≤ k < k1, j < n, and every element it
                    // writes, c[(i0+r)·ldc + j], lies inside its slice; the tile touches only
                    // columns j0..j0+w ⊆ 0..n. c is a unique borrow, so it does not alias a or b.
                    unsafe {
                        let t = avx512::Tile {
                            a: a.data.as_ptr().add(i0 * a.rs + k0 * a.cs),
                            rs: a.rs,
                            cs: a.cs,
                            b: b.as_ptr().add(k0 * ldb + j0),
                            ldb,
                            kn: k1 - k0,
                            c: c.as_mut_ptr().add(i0 * ldc + j0),
                            ldc,
                            w,
                            alpha,
                        };
                        avx512::tile_rows(i1 - i0, t);
                    }
                }
                return;
            }
            gemm_strided(
                i1 - i0,
                n,
                k1 - k0,
                &mut c[i0 * ldc..],
                ldc,
                false,
                (&a.data[i0 * a.rs + k0 * a.cs..], a.rs, a.cs),
                (&b[k0 * ldb..], ldb, 1),
                alpha,
                false,
            );
        });
    }
}

/// Calls `f(i0, i1, n, k0, k1)` for each row tile [i0, i1) of `rows` in order, tiles aligned to
/// multiples of `tile` from row 0 (the first and last may be partial), with
/// `(n, k0, k1) = span(i0, i1)`.
#[inline(always)]
fn for_each_tile(
    rows: Range<usize>,
    tile: usize,
    span: impl Fn(usize, usize) -> (usize, usize, usize),
    mut f: impl FnMut(usize, usize, usize, usize, usize),
) {
    let mut i0 = rows.start;
    while i0 < rows.end {
        let i1 = ((i0 / tile + 1) * tile).min(rows.end);
        let (n, k0, k1) = span(i0, i1);
        f(i0, i1, n, k0, k1);
        i0 = i1;
    }
}

/// Panics unless every element a tile over `rows` × 0..n × `ks` touches lies in its slice.
fn check(
    (c, ldc): (&[f32], usize),
    rows: Range<usize>,
    a: Strided,
    (b, ldb): (&[f32], usize),
    n: usize,
    ks: Range<usize>,
) {
    if rows.is_empty() || n == 0 {
        return;
    }
    let last = rows.end - 1;
    assert!(
        n <= ldc || rows.len() == 1,
        "attention tiles: c row stride {ldc} < n {n}"
    );
    assert!(last * ldc + n <= c.len(), "attention tiles: c too short");
    // Before the empty case: a reversed range would make the inner length k1 − k0 wrap.
    assert!(
        ks.start <= ks.end,
        "attention tiles: span's k0 {} > k1 {}",
        ks.start,
        ks.end
    );
    if ks.is_empty() {
        return;
    }
    let kl = ks.end - 1;
    assert!(
        last * a.rs + kl * a.cs < a.data.len(),
        "attention tiles: a too short"
    );
    assert!(kl * ldb + n <= b.len(), "attention tiles: b too short");
}

/// `xp[t·w + i] = x[t·ld + i]` for t < rows, i < w: w-wide columns of a row-major matrix with
/// row stride ld, packed contiguous.
pub fn pack_rows(xp: &mut [f32], x: &[f32], ld: usize, w: usize, rows: usize) {
    if rows == 0 || w == 0 {
        return;
    }
    assert!(
        xp.len() >= rows * w && (rows - 1) * ld + w <= x.len() && w <= ld,
        "pack_rows: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::simd::avx512f() {
        // SAFETY: the CPU has AVX-512F (checked above); the assert above proves that every read
        // x[t·ld + i] and every write xp[t·w + i] (t < rows, i < w) lies inside its slice.
        unsafe { avx512::pack_rows(xp.as_mut_ptr(), x.as_ptr(), ld, w, rows) };
        return;
    }
    for (dst, row) in xp.chunks_exact_mut(w).zip(x.chunks(ld)).take(rows) {
        dst.copy_from_slice(&row[..w]);
    }
}

/// `xt[i·rows + t] = x[t·ld + i]` for t < rows, i < w: w-wide columns of a row-major matrix
/// with row stride ld, transposed (16×16 register tiles, `transpose_strided`; they replaced one
/// gather per column, issue 5).
/// Panics (in `transpose_strided`) unless those indices lie inside the slices.
pub fn pack_transposed(xt: &mut [f32], x: &[f32], ld: usize, w: usize, rows: usize) {
    transpose_strided(xt, rows, x, ld, rows, w);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// See `super::pack_rows`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; x readable and xp writable at the indices `pack_rows` names.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_rows(xp: *mut f32, x: *const f32, ld: usize, w: usize, rows: usize) {
        for t in 0..rows {
            for i in (0..w).step_by(16) {
                let m = ((1u32 << (w - i).min(16)) - 1) as u16;
                let v = _mm512_maskz_loadu_ps(m, x.add(t * ld + i));
                _mm512_mask_storeu_ps(xp.add(t * w + i), m, v);
            }
        }
    }

    /// One register tile's operands: `c[r·ldc + j] = alpha · Σ_{k<kn} a[r·rs + k·cs] · b[k·ldb + j]`
    /// for the tile's rows r and j < w.
    #[derive(Clone, Copy)]
    pub struct Tile {
        pub a: *const f32,
        pub rs: usize,
        pub cs: usize,
        pub b: *const f32,
        pub ldb: usize,
        pub kn: usize,
        pub c: *mut f32,
        pub ldc: usize,
        pub w: usize,
        pub alpha: f32,
    }

    /// Dispatches `tile` on the row count `m` (1..=MR) and the column vectors (w ≤ 16: one).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the pointers must be valid as `tile` says, 1 ≤ m ≤ MR, w ≤ NR.
    #[inline]
    pub unsafe fn tile_rows(m: usize, t: Tile) {
        debug_assert!((1..=MR).contains(&m) && (1..=NR).contains(&t.w));
        macro_rules! go {
            ($($r:literal)*) => {
                match (m, t.w > 16) {
                    $(
                        ($r, false) => tile::<$r, 1>(t),
                        ($r, true) => tile::<$r, 2>(t),
                    )*
                    _ => unreachable!("attention tile rows {m}"),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8)
    }

    /// `t`'s product for r < R, j < t.w (w ≤ 16·V): R×V accumulators of 16 lanes, one broadcast
    /// of a per row and k.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; a, b must be readable and c writable at all those indices.
    #[allow(clippy::needless_range_loop)] // r, v index 2 arrays
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const V: usize>(t: Tile) {
        let Tile {
            a,
            rs,
            cs,
            b,
            ldb,
            kn,
            c,
            ldc,
            w,
            alpha,
        } = t;
        let mut mask = [0u16; V];
        for (v, m) in mask.iter_mut().enumerate() {
            let lanes = w.saturating_sub(16 * v).min(16);
            *m = ((1u32 << lanes) - 1) as u16;
        }
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        // Full-width tiles load without masks (the tile alone 19–23% faster, issue 5).
        let full = w == 16 * V;
        for k in 0..kn {
            let bk = b.add(k * ldb);
            let mut bv = [_mm512_setzero_ps(); V];
            for v in 0..V {
                bv[v] = if full {
                    _mm512_loadu_ps(bk.add(16 * v))
                } else {
                    _mm512_maskz_loadu_ps(mask[v], bk.add(16 * v))
                };
            }
            let ak = a.add(k * cs);
            for r in 0..R {
                let x = _mm512_set1_ps(*ak.add(r * rs));
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
                }
            }
        }
        let al = _mm512_set1_ps(alpha);
        for r in 0..R {
            for v in 0..V {
                _mm512_mask_storeu_ps(c.add(r * ldc + 16 * v), mask[v], _mm512_mul_ps(acc[r][v], al));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain-loop reference of `Tiles::gemm` (rows tiled as `tiles` tiles them).
    fn reference(
        (c, ldc): (&mut [f32], usize),
        rows: Range<usize>,
        a: Strided,
        (b, ldb): (&[f32], usize),
        alpha: f32,
        tiles: Tiles,
        span: impl Fn(usize, usize) -> (usize, usize, usize),
    ) {
        for_each_tile(rows, tiles.rows(), span, |i0, i1, n, k0, k1| {
            for i in i0..i1 {
                for j in 0..n {
                    let s: f64 = (k0..k1)
                        .map(|k| a.data[i * a.rs + k * a.cs] as f64 * b[k * ldb + j] as f64)
                        .sum();
                    c[i * ldc + j] = (alpha as f64 * s) as f32;
                }
            }
        });
    }

    #[test]
    fn tiles_match_plain_loops_at_odd_sizes() {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(m, n, kn) in crate::testing::GEMM_SHAPES {
            // a transposed or not, with padding in the strides; c with padding columns.
            for (rs, cs) in [(kn + 3, 1), (1, m + 2)] {
                let a: Vec<f32> = (0..m * rs.max(1) + kn * cs.max(1)).map(|_| rnd()).collect();
                let ldb = n + 5;
                let b: Vec<f32> = (0..kn * ldb).map(|_| rnd()).collect();
                let ldc = n + 2;
                // Causal-style span: columns up to i1 (capped at n), inner from i0 / 2 (k0 ≤ k1).
                let span = |i0: usize, i1: usize| {
                    let k1 = kn.min(i1 + 1);
                    (n.min(i1 + 3), (i0 / 2).min(k1), k1)
                };
                for rows in [0..m, 3.min(m)..m] {
                    let a = Strided { data: &a, rs, cs };
                    let close = |x: &[f32], y: &[f32]| {
                        x.iter().zip(y).all(|(p, q)| {
                            (p.is_nan() && q.is_nan()) || (p - q).abs() <= 1e-5 * (1.0 + q.abs())
                        })
                    };
                    // Spans depend on the tile, so compare each path with the reference tiled alike.
                    for tiles in [Tiles::detect(), Tiles::FALLBACK] {
                        let mut want = vec![f32::NAN; m * ldc];
                        let mut got = want.clone();
                        reference((&mut want, ldc), rows.clone(), a, (&b, ldb), 0.7, tiles, span);
                        tiles.gemm((&mut got, ldc), rows.clone(), a, (&b, ldb), 0.7, span);
                        assert!(
                            close(&got, &want),
                            "{tiles:?} m {m} n {n} k {kn} rs {rs} rows {rows:?}"
                        );
                    }
                }
            }
        }
    }

    /// A span whose inner range runs backwards is refused (its length would wrap), on both paths.
    #[test]
    fn a_reversed_inner_range_panics() {
        for tiles in [Tiles::detect(), Tiles::FALLBACK] {
            let (a, b, mut c) = (vec![1.0; 64], vec![1.0; 64], vec![0.0; 64]);
            let a = Strided {
                data: &a,
                rs: 8,
                cs: 1,
            };
            let run = std::panic::AssertUnwindSafe(|| {
                tiles.gemm((&mut c, 8), 0..8, a, (&b, 8), 1.0, |_, _| (8, 5, 3));
            });
            let err = std::panic::catch_unwind(run).expect_err("a reversed span must panic");
            let msg = err.downcast_ref::<String>().map_or("", |m| m.as_str());
            assert!(msg.contains("k0 5 > k1 3"), "{tiles:?}: {msg}");
        }
    }

    #[test]
    fn packing_matches_plain_loops() {
        for (rows, w, ld) in [(1, 1, 1), (17, 8, 13), (33, 32, 40), (5, 64, 64), (40, 20, 21)] {
            let x: Vec<f32> = (0..rows * ld).map(|i| i as f32).collect();
            let (mut xp, mut xt) = (vec![f32::NAN; rows * w], vec![f32::NAN; rows * w]);
            pack_rows(&mut xp, &x, ld, w, rows);
            pack_transposed(&mut xt, &x, ld, w, rows);
            for t in 0..rows {
                for i in 0..w {
                    assert_eq!(xp[t * w + i], x[t * ld + i]);
                    assert_eq!(xt[i * rows + t], x[t * ld + i]);
                }
            }
        }
    }
}
