//! Matrix transposes in 16×16 AVX-512 register tiles (plain loops elsewhere): attention's
//! per-head Kᵀ and Vᵀ packs, and SwiGLU's transposed gradients for the W1/W3 weight gradients.
//! (Issue 5 also tried this for the other weight gradients: separate transpose passes, and
//! transposed copies written by the cross-entropy, RMSNorm and RoPE backwards. Each cost about
//! what it saved in a whole training step, so only SwiGLU's stayed.)

/// `dst[c·ld_dst + r] = src[r·ld_src + c]` for r < rows, c < cols, on
/// this thread: 16×16 register tiles where the CPU has AVX-512, plain loops for the rest.
pub fn transpose_strided(
    dst: &mut [f32],
    ld_dst: usize,
    src: &[f32],
    ld_src: usize,
    rows: usize,
    cols: usize,
) {
    let empty = rows == 0 || cols == 0;
    assert!(
        empty || (rows <= ld_dst && (cols - 1) * ld_dst + rows <= dst.len()),
        "transpose_strided: dst"
    );
    // SAFETY: the assert above puts every dst[c·ld_dst + r] (r < rows, c < cols) inside the
    // exclusively borrowed dst; transpose_to_ptr checks src itself.
    unsafe { transpose_to_ptr(dst.as_mut_ptr(), ld_dst, src, ld_src, rows, cols, false) }
}

/// `transpose_strided` through a raw dst pointer: for callers that fill disjoint column blocks of
/// one matrix from several threads (a `&mut` slice per block would overlap the others' rows).
/// With `stream`, tiles whose dst rows start on 64-byte boundaries are written with non-temporal
/// stores: a big transposed output is not read from memory before being overwritten (issue 5:
/// that read-for-ownership tripled the cost of SwiGLU's transposed gradients in a training step).
///
/// # Safety
/// `dst` must be valid for writes at every `c·ld_dst + r` (r < rows, c < cols), rows ≤ ld_dst,
/// and no other thread may read or write those elements during the call. (`src` is checked: an
/// index outside it panics.)
pub(crate) unsafe fn transpose_to_ptr(
    dst: *mut f32,
    ld_dst: usize,
    src: &[f32],
    ld_src: usize,
    rows: usize,
    cols: usize,
    stream: bool,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        cols <= ld_src && (rows - 1) * ld_src + cols <= src.len() && rows <= ld_dst,
        "transpose: src"
    );
    let (mut done_r, mut done_c) = (0, 0);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = stream;
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::simd::avx512f() {
        (done_r, done_c) = (rows / 16 * 16, cols / 16 * 16);
        let stream = stream && ld_dst.is_multiple_of(16);
        let tile = |r: usize, c: usize| {
            // SAFETY: AVX-512F checked; the tile reads src[(r + i)·ld_src + c + j] (inside src by
            // the assert) and writes dst[(c + j)·ld_dst + r + i], i, j < 16, inside the region
            // the caller vouches for; streaming only where those rows are aligned.
            unsafe {
                let (s, d) = (src.as_ptr().add(r * ld_src + c), dst.add(c * ld_dst + r));
                if stream && (d as usize).is_multiple_of(64) {
                    avx512::tile16::<true>(s, ld_src, d, ld_dst)
                } else {
                    avx512::tile16::<false>(s, ld_src, d, ld_dst)
                }
            }
        };
        // Streaming (a big output): columns outer, so each dst row receives its whole run of
        // `rows` floats in one visit. Otherwise (small, cache-resident packs) rows outer, which
        // measured faster for attention's per-head packs.
        for outer in (0..if stream { done_c } else { done_r }).step_by(16) {
            for inner in (0..if stream { done_r } else { done_c }).step_by(16) {
                if stream {
                    tile(inner, outer)
                } else {
                    tile(outer, inner)
                }
            }
        }
        if stream {
            // SAFETY: SSE is baseline on x86_64; the fence orders the streaming stores above
            // before anything this thread does next (the caller's join publishes them).
            unsafe { std::arch::x86_64::_mm_sfence() };
        }
    }
    // What the tiles did not cover: rows ≥ done_r, or columns ≥ done_c.
    for r in 0..rows {
        for c in (if r < done_r { done_c } else { 0 })..cols {
            // SAFETY: r < rows, c < cols: inside the caller's region.
            unsafe { *dst.add(c * ld_dst + r) = src[r * ld_src + c] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// dst[j·ld_dst + i] = src[i·ld_src + j] for i, j < 16, in registers: 32-bit and 64-bit
    /// interleaves within 128-bit lanes, then two rounds of lane shuffles. STREAM: non-temporal
    /// stores (no read-for-ownership of the destination lines).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the 16 rows of 16 floats at src (stride ld_src) must be
    /// readable, and those at dst (stride ld_dst) writable; with STREAM every dst row start
    /// must be 64-byte aligned.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile16<const STREAM: bool>(src: *const f32, ld_src: usize, dst: *mut f32, ld_dst: usize) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, x) in r.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(src.add(i * ld_src));
        }
        // Within each 128-bit lane L of rows a, b, c, d (columns 4L..4L+3): after these two
        // rounds r[4g + c] lane L holds column 4L + c of rows 4g..4g+3.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let pd = _mm512_castps_pd;
        let ps = _mm512_castpd_ps;
        for g in 0..4 {
            let (a0, a1, b0, b1) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            r[4 * g] = ps(_mm512_unpacklo_pd(pd(a0), pd(b0)));
            r[4 * g + 1] = ps(_mm512_unpackhi_pd(pd(a0), pd(b0)));
            r[4 * g + 2] = ps(_mm512_unpacklo_pd(pd(a1), pd(b1)));
            r[4 * g + 3] = ps(_mm512_unpackhi_pd(pd(a1), pd(b1)));
        }
        // Output row 4L + c = lane L of r[c], r[4 + c], r[8 + c], r[12 + c]: a 4×4 transpose of
        // 128-bit lanes.
        for c in 0..4 {
            let (a, b, cc, d) = (r[c], r[4 + c], r[8 + c], r[12 + c]);
            let u0 = _mm512_shuffle_f32x4::<0x88>(a, b);
            let u1 = _mm512_shuffle_f32x4::<0xdd>(a, b);
            let u2 = _mm512_shuffle_f32x4::<0x88>(cc, d);
            let u3 = _mm512_shuffle_f32x4::<0xdd>(cc, d);
            let out = [
                _mm512_shuffle_f32x4::<0x88>(u0, u2),
                _mm512_shuffle_f32x4::<0x88>(u1, u3),
                _mm512_shuffle_f32x4::<0xdd>(u0, u2),
                _mm512_shuffle_f32x4::<0xdd>(u1, u3),
            ];
            for (l, v) in out.into_iter().enumerate() {
                let p = dst.add((4 * l + c) * ld_dst);
                if STREAM {
                    _mm512_stream_ps(p, v)
                } else {
                    _mm512_storeu_ps(p, v)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = src[r * cols + c];
            }
        }
        t
    }

    /// Every shape class: below one tile, whole tiles, ragged edges in both directions.
    #[test]
    fn transpose_matches_naive_on_ragged_shapes() {
        for (rows, cols) in [
            (1, 1),
            (3, 5),
            (16, 16),
            (17, 16),
            (16, 33),
            (48, 64),
            (50, 131),
            (256, 200),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 7.0).collect();
            let want = naive(&src, rows, cols);
            let mut dst = vec![f32::NAN; rows * cols];
            transpose_strided(&mut dst, rows, &src, cols, rows, cols);
            assert_eq!(dst, want, "{rows}x{cols}");
        }
    }

    /// Sub-matrices with padded strides on both sides; entries outside are left alone.
    #[test]
    fn strided_transpose_touches_only_its_block() {
        for (rows, cols) in [(16, 32), (20, 7), (33, 48), (256, 32)] {
            let (ld_src, ld_dst) = (cols + 5, rows + 3);
            let src: Vec<f32> = (0..rows * ld_src).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; cols * ld_dst];
            transpose_strided(&mut dst, ld_dst, &src, ld_src, rows, cols);
            for c in 0..cols {
                for r in 0..ld_dst {
                    let want = if r < rows { src[r * ld_src + c] } else { -1.0 };
                    assert_eq!(dst[c * ld_dst + r], want, "{rows}x{cols} at ({c}, {r})");
                }
            }
        }
    }

    #[test]
    fn transpose_of_empty_is_a_no_op() {
        transpose_strided(&mut [], 1, &[], 7, 0, 7);
        transpose_strided(&mut [], 5, &[], 1, 5, 0);
    }
}
