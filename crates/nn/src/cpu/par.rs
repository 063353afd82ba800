//! Parallel helpers shared by the row-parallel CPU kernels: a raw pointer rayon tasks may share
//! (`SyncPtr`), the rows-per-task rule (`rows_per_task`) and the chunked elementwise loop
//! (`zip3_chunks`).

use rayon::prelude::*;

/// Elements per rayon task of the elementwise kernels (residual, SwiGLU).
pub(crate) const CHUNK: usize = 16 * 1024;

/// `f(out, a, b)` on the matching `CHUNK`-element chunks of three slices of one length, in
/// parallel. Panics with "`op`: lengths" when the lengths differ.
pub(crate) fn zip3_chunks(
    op: &str,
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync + Send,
) {
    assert!(out.len() == a.len() && a.len() == b.len(), "{op}: lengths");
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .zip(b.par_chunks(CHUNK))
        .for_each(|((o, a), b)| f(o, a, b));
}

/// A raw pointer that rayon tasks may share: for kernels whose tasks write disjoint parts of one
/// exclusively borrowed buffer that are not contiguous slices (column blocks of SwiGLU's
/// transposed gradients, scattered embedding rows). Each use states in its SAFETY comment why the parts are
/// disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub(crate) *mut f32);

impl SyncPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the field).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: SyncPtr only carries the address; every dereference is an `unsafe` block in a kernel
// whose tasks touch disjoint elements of a buffer borrowed exclusively for the whole call.
unsafe impl Send for SyncPtr {}
// SAFETY: as above; the pointer is only copied, never turned into overlapping slices.
unsafe impl Sync for SyncPtr {}

/// Rows per rayon task for row-parallel elementwise kernels: enough work per task that the
/// scheduling cost is negligible, small enough to balance over a few cores.
pub(crate) fn rows_per_task(n_rows: usize, row_len: usize) -> usize {
    let target = 16 * 1024; // elements per task
    (target / row_len.max(1)).clamp(1, n_rows.max(1))
}
