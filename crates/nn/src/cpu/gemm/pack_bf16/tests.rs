//! Tests of the bf16 packers: the layouts match their definitions, and the three-term split is exact.

use super::*;

/// Values whose bf16 rounding is exercised (not exactly representable), no denormals.
fn fill(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 * 3.0 - 1.37)
        .collect()
}

/// Runs a packer on `terms` outputs of `len` (pre-filled with 0xffff) and returns them.
fn packed(len: usize, terms: usize, pack: impl FnOnce(&mut [&mut [u16]])) -> Vec<Vec<u16>> {
    let mut bufs = vec![vec![0xffffu16; len]; terms];
    let mut outs: Vec<&mut [u16]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    pack(&mut outs);
    bufs
}

/// Each term t of the split, packed as the last of t + 1 outputs (so one, two and three
/// outputs per call are all run), in every layout.
#[test]
fn packers_match_the_layout_definition() {
    if !simd::runs_here(simd::avx512_bf16(), "AVX-512 BF16") {
        return;
    }
    // Every term of the three-term split (part 0: plain rounding).
    for (part, &(rows, k)) in (0..3).flat_map(|p| {
        [(1usize, 1usize), (16, 32), (37, 70), (5, 100), (64, 33)]
            .iter()
            .map(move |s| (p, s))
    }) {
        let kp = k.div_ceil(32) * 32;
        let mp = rows.div_ceil(32) * 32;
        let r0 = 3;
        let src = fill((r0 + rows) * k + 7);
        // Row-major (rows, k) with row stride k + 1, and the transposed storage (k, r0 + rows).
        let rs = k + 1;
        let mut rm = vec![0.0; (r0 + rows) * rs];
        let mut tr = vec![0.0; k * (r0 + rows)];
        for i in 0..r0 + rows {
            for p in 0..k {
                rm[i * rs + p] = src[i * k + p];
                tr[p * (r0 + rows) + i] = src[i * k + p];
            }
        }
        let mut want_a = vec![0u16; mp * kp];
        for i in 0..rows {
            for p in 0..k {
                want_a[(i / 16) * 16 * kp + (p / 32) * 512 + (i % 16) * 32 + p % 32] =
                    f32_to_bf16(split_part_scalar(src[(r0 + i) * k + p], part));
            }
        }
        for (view, name) in [
            ((&rm[..], rs, 1), "k-contiguous"),
            ((&tr[..], 1, r0 + rows), "m-contiguous"),
        ] {
            let got = packed(mp * kp, part + 1, |o| pack_a_panels(o, view, r0, rows, k));
            assert_eq!(got[part], want_a, "A {name} rows {rows} k {k} part {part}");
        }
        let job = ARows {
            a: (&rm, rs, 1),
            r0,
            rows,
            k,
            kp,
            mp,
        };
        // SAFETY: as in pack_a_panels (bounds asserted there for the same view).
        let got = packed(mp * kp, part + 1, |o| unsafe { pack_a_scalar(o, job) });
        assert_eq!(got[part], want_a, "A scalar part {part}");

        // B (k, n = rows) = srcᵀ restricted: B[p][j] = src[j][p]; panels at j0 = 0 and 16.
        let n = rows + r0;
        for j0 in [0, 16] {
            let mut want_b = vec![0u16; 16 * kp];
            for p in 0..k {
                for jj in 0..16 {
                    if j0 + jj < n {
                        want_b[(p / 2) * 32 + jj * 2 + p % 2] =
                            f32_to_bf16(split_part_scalar(src[(j0 + jj) * k + p], part));
                    }
                }
            }
            for (view, name) in [
                ((&tr[..], n, 1), "n-contiguous"),
                ((&rm[..], 1, rs), "k-contiguous"),
            ] {
                let got = packed(16 * kp, part + 1, |o| pack_b_panel(o, view, k, n, j0));
                assert_eq!(got[part], want_b, "B {name} n {n} k {k} j0 {j0} part {part}");
            }
            let nj = 16.min(n.saturating_sub(j0));
            // SAFETY: bounds as asserted by pack_b_panel for this view.
            let got = packed(16 * kp, part + 1, |o| unsafe {
                let b = (&tr[..], n, 1);
                pack_b_scalar(
                    o,
                    BPanel {
                        b,
                        first: 0,
                        at: 0,
                        k,
                        kp,
                        j0,
                        nj,
                    },
                )
            });
            if j0 < n {
                assert_eq!(got[part], want_b, "B scalar part {part}");
            }
        }
        // Several panels at once (the GEMM packs eight per task, some past n) equal the
        // single-panel packs, for both views.
        for (view, name) in [
            ((&tr[..], n, 1), "n-contiguous"),
            ((&rm[..], 1, rs), "k-contiguous"),
        ] {
            let panels = n.div_ceil(16) + 1;
            let got = packed(panels * 16 * kp, part + 1, |o| {
                pack_b_panels(o, 0, view, k, kp, n, 0)
            });
            // A single output starting at term `part` packs the same.
            let alone = packed(panels * 16 * kp, 1, |o| pack_b_panels(o, part, view, k, kp, n, 0));
            assert_eq!(alone[0], got[part], "B {name} term {part} alone");
            for (t, chunk) in got[part].chunks_exact(16 * kp).enumerate() {
                let one = packed(16 * kp, part + 1, |o| pack_b_panel(o, view, k, n, 16 * t));
                assert_eq!(
                    chunk,
                    &one[part][..],
                    "B {name} panel {t} of {panels}, n {n} k {k}"
                );
            }
        }
    }
}

/// The three terms of the split add up to x exactly (every f32 significand bit kept), for
/// values over many binades; the SIMD split gives the scalar one's terms.
#[test]
fn three_term_split_is_exact() {
    let mut bits = 0x1234_5678u32;
    let xs: Vec<f32> = (0..4096i32)
        .map(|i| {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = f32::from_bits((bits & 0x807f_ffff) | (0x3f80_0000 - (8 << 23)));
            x * 2f32.powi(i % 60 - 30)
        })
        .collect();
    for &x in &xs {
        let terms: Vec<f32> = (0..3)
            .map(|p| simd::round_bf16(split_part_scalar(x, p)))
            .collect();
        let sum = terms.iter().map(|&t| t as f64).sum::<f64>();
        assert_eq!(sum, x as f64, "{x:e} = {terms:?}");
    }
    if simd::avx512_bf16() {
        // Pack a (1, 32) row of A into three terms: their first tile rows hold x's terms.
        for chunk in xs.chunks_exact(32) {
            let got = packed(32 * 32, 3, |o| pack_a_panels(o, (chunk, 32, 1), 0, 1, 32));
            for (part, g) in got.iter().enumerate() {
                for (j, &x) in chunk.iter().enumerate() {
                    assert_eq!(
                        g[j],
                        f32_to_bf16(split_part_scalar(x, part)),
                        "part {part} of {x:e}"
                    );
                }
            }
        }
    }
}
