//! Token embedding lookup and its scatter-add backward.

use super::par::SyncPtr;
use rayon::prelude::*;

/// `out (n, d)`: row i = `table[ids[i]]`, table (vocab, d). Overwrites out. Ids must be < vocab
/// (the model checks them first and returns an error; here an id out of range panics).
pub fn embedding_forward(out: &mut [f32], ids: &[u32], table: &[f32], d: usize) {
    assert_eq!(out.len(), ids.len() * d, "embedding_forward: out");
    out.par_chunks_mut(d).zip(ids.par_iter()).for_each(|(row, &id)| {
        let id = id as usize;
        row.copy_from_slice(&table[id * d..(id + 1) * d]);
    });
}

/// `dtable[ids[i]] += dout[i]` for every row i (ACCUMULATED). dout (n, d), dtable (vocab, d).
/// Parallel over column blocks, so each task owns its columns and repeated ids need no locks.
pub fn embedding_backward(dtable: &mut [f32], dout: &[f32], ids: &[u32], d: usize) {
    assert_eq!(dout.len(), ids.len() * d, "embedding_backward: dout");
    assert_eq!(dtable.len() % d, 0, "embedding_backward: dtable");
    let vocab = dtable.len() / d;
    assert!(
        ids.iter().all(|&i| (i as usize) < vocab),
        "embedding_backward: id ≥ vocab"
    );
    let cols = 64.min(d);
    let n_blocks = d.div_ceil(cols);
    // Split dtable into column blocks via an index: each task writes columns [c0, c1) of every row.
    let ptr = SyncPtr(dtable.as_mut_ptr());
    (0..n_blocks).into_par_iter().for_each(|b| {
        let c0 = b * cols;
        let c1 = (c0 + cols).min(d);
        for (i, &id) in ids.iter().enumerate() {
            let src = &dout[i * d + c0..i * d + c1];
            // SAFETY: id < vocab (asserted above) so row `id` lies inside dtable; each task touches
            // only columns [c0, c1) of each row, disjoint from every other task's columns, and
            // dtable is exclusively borrowed for this whole call, so no two threads write the same
            // element and nothing else reads it meanwhile.
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.ptr().add(id as usize * d + c0), c1 - c0) };
            for (a, b) in dst.iter_mut().zip(src) {
                *a += b;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_sums_repeated_ids_across_column_blocks() {
        let d = 130; // three column blocks, the last partial
        let ids = [2u32, 0, 2, 2];
        let dout: Vec<f32> = (0..ids.len() * d).map(|i| i as f32).collect();
        let mut dt = vec![1.0; 3 * d];
        embedding_backward(&mut dt, &dout, &ids, d);
        for c in 0..d {
            assert_eq!(dt[c], 1.0 + dout[d + c]);
            assert_eq!(dt[d + c], 1.0);
            assert_eq!(dt[2 * d + c], 1.0 + dout[c] + dout[2 * d + c] + dout[3 * d + c]);
        }
    }
}
