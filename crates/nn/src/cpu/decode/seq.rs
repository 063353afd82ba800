//! One sequence's KV cache as a decode step writes and reads it (`Seq`): the RoPE'd key/value
//! store of the QKV phase and one head's attention over the cached positions, shared by the
//! batch-1 step (`step`) and the batched step (`batch_step`).

use super::attention::decode_head;
use super::step::{CacheRefs, Shared};
use crate::cpu::rope::{rope_forward_span, RopeTable};
use std::ops::Range;

/// One sequence's cache as a decode step writes and reads it (layer l at offset l·max_len·d), and
/// the position the step appends. The batch-1 step has one, the batched step one per sequence.
pub(super) struct Seq<'a> {
    pub(super) kc: Shared<'a>,
    pub(super) vc: Shared<'a>,
    pub(super) kt: Shared<'a>,
    pub(super) rope: Option<&'a RopeTable>,
    pub(super) pos: usize,
    pub(super) max_len: usize,
}

impl<'a> Seq<'a> {
    pub(super) fn new(cache: CacheRefs<'a>, pos: usize) -> Seq<'a> {
        Seq {
            kc: Shared::new(cache.k),
            vc: Shared::new(cache.v),
            kt: Shared::new(cache.k_t),
            rope: cache.rope,
            pos,
            max_len: cache.max_len,
        }
    }

    /// The rows `r` (of the 3d) of this sequence's q/k/v of layer `l`, in `o` (r.len()): RoPE on
    /// the q and k rows at the position, then the k and v rows into the cache at the position.
    ///
    /// # Safety
    /// While this runs, no other thread may read or write this cache's elements of the position
    /// in rows `r` of layer `l` (the QKV phase: each chunk has its own rows).
    #[inline(always)]
    pub(super) unsafe fn store_qkv(&self, o: &mut [f32], r: &Range<usize>, l: usize, d: usize) {
        let (pos, max_len) = (self.pos, self.max_len);
        let off = l * max_len * d;
        // The chunk's part of q, k and v (global rows s of the 3d).
        for (sec, s) in [0, 1, 2].map(|sec| (sec, r.start.max(sec * d)..r.end.min((sec + 1) * d))) {
            if s.is_empty() {
                continue;
            }
            let vals = &mut o[s.start - r.start..s.end - r.start];
            let first = s.start - sec * d;
            if sec < 2 {
                if let Some(table) = self.rope {
                    rope_forward_span(vals, first, pos, table);
                }
            }
            for (i, &val) in vals.iter().enumerate() {
                let e = first + i;
                // SAFETY: element (pos, e) of layer l, e in rows r: exclusive by the caller's
                // guarantee.
                unsafe {
                    match sec {
                        1 => {
                            self.kc.write(off + pos * d + e, val);
                            self.kt.write(off + e * max_len + pos, val);
                        }
                        2 => self.vc.write(off + pos * d + e, val),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Head `hh`'s attention over the cached positions 0..=pos of layer `l`: `o` (d_head) from
    /// `q` (the head's d_head query values); `scores` holds at least pos + 1 values.
    ///
    /// # Safety
    /// While this runs, no thread may write this cache (the attention phase: the cache is written
    /// only in the QKV phase).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) unsafe fn attend(
        &self,
        o: &mut [f32],
        scores: &mut [f32],
        q: &[f32],
        l: usize,
        hh: usize,
        d: usize,
        dh: usize,
        scale: f32,
    ) {
        let (max_len, layer_len) = (self.max_len, self.max_len * d);
        let off = l * layer_len;
        // SAFETY: no writer by the caller's guarantee.
        let (kt, vc) = unsafe { (self.kt.all(), self.vc.all()) };
        decode_head(
            o,
            &mut scores[..self.pos + 1],
            q,
            &kt[off + hh * dh * max_len..][..dh * max_len],
            &vc[off + hh * dh..off + layer_len],
            max_len,
            d,
            scale,
        );
    }
}
