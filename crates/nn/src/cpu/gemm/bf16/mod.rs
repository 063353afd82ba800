//! Mixed-precision GEMM: operands rounded to bf16 (round to nearest even), products accumulated
//! in f32. Three kernels, the best this CPU has (`Bf16Kernel`): AMX tiles (Intel Sapphire Rapids
//! and later, `amx.rs`), AVX-512 BF16 dot products (AMD Zen 4, `dpbf16.rs`), or, elsewhere, the
//! operands rounded into f32 copies and multiplied by the f32 gemm. All give the same numbers up
//! to the order of the f32 sums.
//!
//! Packed path (AMX, AVX-512 BF16): B is packed once per call into 16-column VNNI panels (in
//! parallel), then rows of A are split into chunks over the rayon pool; each task packs its rows
//! into 16-row panels one k-block (`KC`) at a time and walks its 32×32 blocks of C. The same
//! driver (`gemm_packed`) runs the f32-accurate split GEMM (`f32_amx`: three bf16 terms per
//! operand, `Terms::Three`) and products that share an operand (packed once, `Shared`).

use super::amx::{TileGuard, TILE_ELEMS};
use super::dpbf16;
use super::f32::{check_gemm_bounds, gemm_strided};
use super::microkernel::{CBlock, Panels};
use super::pack_bf16::{pack_a_panels, pack_b_panels};
use crate::cpu::simd::round_bf16;
pub use crate::cpu::simd::{bf16_kernel, Bf16Kernel};
use rayon::prelude::*;
use std::cell::RefCell;

/// k is processed in blocks of this many (a multiple of 32): the A rows of a task and the B
/// panel of a 32-column block then stay in L2 even for backward-weight products over 8k tokens.
const KC: usize = 1024;

/// Columns per block of B walked by every 32-row panel of A before the next block: the C rows
/// of a panel are written in runs of NC (write bandwidth on strided rows is the limit for wide
/// outputs such as the LM head's logits) while the B block stays in L2.
const NC: usize = 256;

/// `dst (m, n) = [dst +] A (m, k) · B (k, n)` with A and B rounded to bf16 and f32 accumulation.
/// Strides as in `gemm_strided` (`a = (slice, row stride, col stride)`); `accumulate` false
/// overwrites dst without reading it. Runs on `bf16_kernel()`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    gemm_bf16_with(bf16_kernel(), m, n, k, dst, dst_rs, accumulate, a, b)
}

/// `gemm_bf16` on a given kernel. Panics if the machine cannot run it.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_with(
    kernel: Bf16Kernel,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    assert!(
        kernel.available(),
        "gemm_bf16: the {kernel:?} kernel is not available on this machine"
    );
    match kernel {
        Bf16Kernel::Emulated => gemm_bf16_emulated(m, n, k, dst, dst_rs, accumulate, a, b),
        _ => gemm_bf16_packed(kernel, Terms::One, m, n, k, dst, dst_rs, accumulate, a, b),
    }
}

/// The portable path: round A and B into f32 copies, then the f32 gemm.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_emulated(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    let round = |(s, rs, cs): (&[f32], usize, usize), rows: usize, cols: usize| -> Vec<f32> {
        let mut out = vec![0.0; rows * cols];
        out.par_chunks_mut(cols.max(1)).enumerate().for_each(|(r, row)| {
            for (c, x) in row.iter_mut().enumerate() {
                *x = round_bf16(s[r * rs + c * cs]);
            }
        });
        out
    };
    if m == 0 || n == 0 || k == 0 {
        return gemm_strided(m, n, k, dst, dst_rs, accumulate, a, b, 1.0, true);
    }
    check_gemm_bounds(m, n, k, dst, dst_rs, a, b);
    let ar = round(a, m, k);
    let br = round(b, k, n);
    gemm_strided(
        m,
        n,
        k,
        dst,
        dst_rs,
        accumulate,
        (&ar, k, 1),
        (&br, n, 1),
        1.0,
        true,
    );
}

thread_local! {
    /// Per-thread packing buffers, reused across calls (no page faults on every matmul).
    static PACK_A: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's buffer `key`, taken out for the duration: a nested call on the
/// same thread (a rayon worker stealing another matmul while it waits) gets an empty buffer
/// instead of a borrow panic.
fn with_buffer<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<u16>>>,
    f: impl FnOnce(&mut Vec<u16>) -> R,
) -> R {
    let mut buf = key.with_borrow_mut(std::mem::take);
    let r = f(&mut buf);
    key.with_borrow_mut(|b| {
        if b.capacity() < buf.capacity() {
            *b = buf;
        }
    });
    r
}

/// The first `len` elements of `buf` from a 64-byte boundary (grown as needed): tile rows are
/// 64 bytes, and a row across two cache lines costs two loads (a Vec<u16> is only 2-aligned).
fn aligned(buf: &mut Vec<u16>, len: usize) -> &mut [u16] {
    if buf.len() < len + 32 {
        buf.resize(len + 32, 0);
    }
    let off = buf.as_ptr().align_offset(64).min(32);
    &mut buf[off..off + len]
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// How many bf16 terms each operand is split into: one (the bf16 GEMM) or three (the f32-accurate
/// GEMM on the tiles, `f32_amx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Terms {
    One,
    Three,
}

impl Terms {
    fn count(self) -> usize {
        match self {
            Terms::One => 1,
            Terms::Three => 3,
        }
    }

    /// The k-block: split operands are three times the bytes, so A's block of a task and B's
    /// NC-column block still share L2.
    fn kc(self) -> usize {
        match self {
            Terms::One => KC,
            Terms::Three => KC / 2,
        }
    }
}

/// A strided matrix operand, as in `gemm_strided`: (slice, row stride, column stride).
pub(crate) type Operand<'a> = (&'a [f32], usize, usize);

/// One product of a `gemm_packed` call: its output (m, n) at row stride `dst_rs` and the operand
/// it does not share with the call's other products.
pub(crate) struct Product<'a, 'b> {
    pub dst: &'a mut [f32],
    pub dst_rs: usize,
    pub operand: Operand<'b>,
}

/// The operand that every product of a `gemm_packed` call shares (and which is packed once).
#[derive(Clone, Copy)]
pub(crate) enum Shared<'a> {
    /// The same A (m, k): each product's operand is its B (k, n).
    A(Operand<'a>),
    /// The same B (k, n): each product's operand is its A (m, k).
    B(Operand<'a>),
}

/// The packed path on AMX or AVX-512 BF16 (`Terms::One`), or the split f32 product on AMX
/// (`Terms::Three`, AMX only).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_bf16_packed(
    kernel: Bf16Kernel,
    terms: Terms,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    let product = Product {
        dst,
        dst_rs,
        operand: b,
    };
    gemm_packed(kernel, terms, (m, n, k), accumulate, Shared::A(a), &mut [product]);
}

/// `dst_i (m, n) = [dst_i +] A_i · B_i` for every product, where one of A, B is the same for all
/// (`shared`, packed once: the q/k/v projections of one input, or their weight gradients from
/// one input). Otherwise as `gemm_bf16_packed`.
pub(crate) fn gemm_packed<'b>(
    kernel: Bf16Kernel,
    terms: Terms,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    shared: Shared<'b>,
    products: &mut [Product<'_, 'b>],
) {
    let operands = |p: &Product<'_, 'b>| -> (Operand<'b>, Operand<'b>) {
        match shared {
            Shared::A(a) => (a, p.operand),
            Shared::B(b) => (p.operand, b),
        }
    };
    if m == 0 || n == 0 || k == 0 {
        for p in products.iter_mut() {
            let (a, b) = operands(p);
            gemm_strided(m, n, k, p.dst, p.dst_rs, accumulate, a, b, 1.0, true);
        }
        return;
    }
    assert!(
        terms == Terms::One || kernel == Bf16Kernel::Amx,
        "split terms need AMX"
    );
    for p in products.iter() {
        let (a, b) = operands(p);
        check_gemm_bounds(m, n, k, p.dst, p.dst_rs, a, b);
    }
    let kp = round_up(k, 32);
    let np = round_up(n, 32);
    let nterms = terms.count();
    // Term t of a packed B occupies [t · b_part ..][.. np·kp] of its buffer. The gap after each
    // term (one tile) puts the terms' tiles of one k-step in different L1 sets (np·kp is a
    // multiple of 16 KB); it measured no different from none, and costs nothing.
    let b_part = np * kp + (nterms > 1) as usize * TILE_ELEMS;
    let b_len = nterms * b_part;
    let bs: Vec<Operand> = match shared {
        Shared::A(_) => products.iter().map(|p| p.operand).collect(),
        Shared::B(b) => vec![b],
    };
    with_buffer(&PACK_B, |pb| {
        let pb = aligned(pb, bs.len() * b_len);
        // Eight 16-column VNNI panels (16 · kp elements each) per task, one task per term: packing
        // all terms of a group in one pass would write 8 panels × 3 terms of streams at once
        // (measured slower in the step).
        let per_task = 8 * 16 * kp;
        pb.par_chunks_mut(b_part).enumerate().for_each(|(i, region)| {
            let (b, term) = (bs[i / nterms], i % nterms);
            region[..np * kp]
                .par_chunks_mut(per_task)
                .enumerate()
                .for_each(|(t, panels)| pack_b_panels(&mut [panels], term, b, k, kp, n, 8 * 16 * t));
        });
        let pb = &pb[..];
        let packed_b = |i: usize| (&pb[i * b_len..(i + 1) * b_len], b_part, kp);
        match shared {
            Shared::A(a) => {
                let mut dsts: Vec<(&mut [f32], usize)> =
                    products.iter_mut().map(|p| (&mut *p.dst, p.dst_rs)).collect();
                let packed: Vec<_> = (0..dsts.len()).map(packed_b).collect();
                row_chunks(kernel, terms, (m, n, k), accumulate, a, &packed, &mut dsts);
            }
            Shared::B(_) => {
                for p in products.iter_mut() {
                    let mut dst = [(&mut *p.dst, p.dst_rs)];
                    row_chunks(
                        kernel,
                        terms,
                        (m, n, k),
                        accumulate,
                        p.operand,
                        &[packed_b(0)],
                        &mut dst,
                    );
                }
            }
        }
    });
}

/// The products `dst_i = [dst_i +] A · B_i` with each B_i packed (`(buffer, b_part, kp)`), over
/// chunks of A's rows on the rayon pool; each task packs its rows of A one k-block at a time and
/// runs every product on them.
fn row_chunks(
    kernel: Bf16Kernel,
    terms: Terms,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    a: Operand,
    bs: &[(&[u16], usize, usize)],
    dsts: &mut [(&mut [f32], usize)],
) {
    let nterms = terms.count();
    let kc_max = terms.kc();
    let kp = round_up(k, 32);
    let threads = rayon::current_num_threads();
    // Row chunks: multiples of 32, at most 256 rows; at least 4 per thread when m allows, or,
    // for split terms with a long reduction (weight gradients: k = tokens > n), one per
    // thread: each chunk streams all of B's three terms (MBs, from L3) once per k-block,
    // so fewer, taller chunks read it fewer times (d→d weight gradient 3.5 -> 3.0 ms).
    let per_thread = if terms == Terms::Three && k > n { 1 } else { 4 };
    let mc = round_up(m.div_ceil(per_thread * threads), 32).clamp(32, 256);
    let strides: Vec<usize> = dsts.iter().map(|d| d.1).collect();
    // Task ci gets rows ci·mc.. of every output.
    let mut tasks: Vec<Vec<&mut [f32]>> = Vec::new();
    for (dst, dst_rs) in dsts.iter_mut() {
        let dst = &mut dst[..(m - 1) * *dst_rs + n];
        for (ci, chunk) in dst.chunks_mut(mc * *dst_rs).enumerate() {
            if ci == tasks.len() {
                tasks.push(Vec::with_capacity(bs.len()));
            }
            tasks[ci].push(chunk);
        }
    }
    tasks.into_par_iter().enumerate().for_each(|(ci, mut chunks)| {
        let r0 = ci * mc;
        let rows = mc.min(m - r0);
        with_buffer(&PACK_A, |pa| {
            // A is packed one k-block at a time, so its panels stay in L2 however long k is.
            let mp = round_up(rows, 32);
            let tiles = (kernel == Bf16Kernel::Amx).then(TileGuard::new);
            for k0 in (0..kp).step_by(kc_max) {
                let kc = kc_max.min(kp - k0);
                let a_part = mp * kc + (nterms > 1) as usize * TILE_ELEMS; // as b_part
                let pa = aligned(pa, nterms * a_part);
                let sub = (&a.0[k0 * a.2..], a.1, a.2);
                let mut outs: Vec<&mut [u16]> = pa[..nterms * a_part]
                    .chunks_exact_mut(a_part)
                    .map(|term| &mut term[..mp * kc])
                    .collect();
                pack_a_panels(&mut outs, sub, r0, rows, kc_max.min(k - k0));
                let load_c = accumulate || k0 > 0;
                for (&(pb, b_part, kp), (dchunk, &dst_rs)) in bs.iter().zip(chunks.iter_mut().zip(&strides)) {
                    block_product(
                        tiles.as_ref(),
                        terms,
                        (&pa[..nterms * a_part], a_part, kc),
                        (pb, b_part, kp, k0),
                        rows,
                        n,
                        dchunk,
                        dst_rs,
                        load_c,
                    );
                }
            }
        });
    });
}

/// One task's product over one k-block: `dst (rows, n) = [dst +] A (rows, k0..k0 + kc) ·
/// B (k0..k0 + kc, n)`, with A packed for this block only (`pa`: 16-row panels of kc, term t at
/// `t · a_part`) and B for all of kp (`pb`: 16-column panels of kp, term t at `t · b_part`). C is
/// read first when `load_c`. On the AMX tiles when `tiles` is given, else with AVX-512 BF16.
#[allow(clippy::too_many_arguments)]
fn block_product(
    tiles: Option<&TileGuard>,
    terms: Terms,
    (pa, a_part, kc): (&[u16], usize, usize),
    (pb, b_part, kp, k0): (&[u16], usize, usize, usize),
    rows: usize,
    n: usize,
    dst: &mut [f32],
    dst_rs: usize,
    load_c: bool,
) {
    let (a_panel, b_panel) = (16 * kc, 16 * kp); // elements per 16-row / 16-column panel
    let kt0 = k0 / 32;
    let ktiles = kc / 32;
    // The last term of a panel starts this many elements after its first.
    let (a_last, b_last) = ((terms.count() - 1) * a_part, (terms.count() - 1) * b_part);
    let mut scratch = [0f32; 32 * 32];
    for jc in (0..n).step_by(NC) {
        for i0 in (0..rows).step_by(32) {
            for j0 in (jc..n.min(jc + NC)).step_by(32) {
                let b0 = &pb[(j0 / 16) * b_panel + kt0 * TILE_ELEMS..];
                let b1 = &pb[(j0 / 16 + 1) * b_panel + kt0 * TILE_ELEMS..];
                let a0 = &pa[(i0 / 16) * a_panel..];
                let a1 = &pa[(i0 / 16 + 1) * a_panel..];
                assert!(a1.len() >= a_last + ktiles * TILE_ELEMS && b1.len() >= b_last + ktiles * TILE_ELEMS);
                let (nrows, cols) = (32.min(rows - i0), 32.min(n - j0));
                // A full block is computed in place; a partial one in the 32×32 scratch, whose valid
                // part is copied in (when C is read) and out.
                let full = nrows == 32 && cols == 32;
                let (c, c_stride) = if full {
                    let c = &mut dst[i0 * dst_rs + j0..];
                    assert!(c.len() >= 31 * dst_rs + 32);
                    (c.as_mut_ptr(), dst_rs)
                } else {
                    if load_c {
                        for r in 0..nrows {
                            scratch[r * 32..][..cols].copy_from_slice(&dst[(i0 + r) * dst_rs + j0..][..cols]);
                        }
                    }
                    (scratch.as_mut_ptr(), 32)
                };
                if terms == Terms::Three {
                    // The next block's C rows, into cache while this one computes: C is the one
                    // operand the tiles read from memory (dst is MBs, far from L2), and a tile
                    // load or store waits for all 16 of its rows.
                    let (ni, nj) = if j0 + 32 < n.min(jc + NC) {
                        (i0, j0 + 32)
                    } else {
                        (i0 + 32, jc)
                    };
                    if ni < rows {
                        prefetch_c_block(&dst[ni * dst_rs + nj..], dst_rs, 32.min(rows - ni));
                    }
                }
                let p = Panels {
                    a: [a0.as_ptr(), a1.as_ptr()],
                    b: [b0.as_ptr(), b1.as_ptr()],
                    ktiles,
                };
                let c = CBlock {
                    ptr: c,
                    stride: c_stride,
                    load: load_c,
                };
                // SAFETY: the asserts above bound all four panels, every term (ktiles tiles each,
                // a0/b0 before a1/b1, the last term furthest) and C: 32 rows of 32 at stride
                // dst_rs inside dst, or the 32×32 scratch.
                unsafe {
                    match (terms, tiles) {
                        (Terms::Three, Some(t)) => t.kernel_32x32_split(p, (a_part, b_part), c),
                        (Terms::Three, None) => unreachable!("split terms need AMX"),
                        (Terms::One, Some(t)) => t.kernel_32x32(p, c),
                        (Terms::One, None) => dpbf16::kernel_32x32(p, c),
                    }
                };
                if !full {
                    for r in 0..nrows {
                        dst[(i0 + r) * dst_rs + j0..][..cols].copy_from_slice(&scratch[r * 32..][..cols]);
                    }
                }
            }
        }
    }
}

/// Prefetches `rows` rows of 32 f32 (two cache lines each, row stride `stride`) from the start of
/// `c` for writing. Rows past the slice are skipped.
#[inline]
fn prefetch_c_block(c: &[f32], stride: usize, rows: usize) {
    #[cfg(target_arch = "x86_64")]
    for r in 0..rows {
        if let Some(row) = c.get(r * stride..) {
            let p = row.as_ptr() as *const i8;
            // SAFETY: a prefetch never faults; p and p + 64 are inside or just past the row.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
                _mm_prefetch::<_MM_HINT_ET0>(p);
                _mm_prefetch::<_MM_HINT_ET0>(p.wrapping_add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (c, stride, rows);
}

#[cfg(test)]
pub(crate) mod tests;
