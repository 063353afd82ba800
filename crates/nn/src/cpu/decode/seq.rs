//! One sequence's KV cache as a decode step writes and reads it (`Seq`): the RoPE'd key/value
//! store of the QKV phase and one head's attention over the cached positions, shared by the
//! batch-1 step (`step`) and the batched step (`batch_step`); with the cache's borrowed form
//! (`CacheRefs`) and the buffer the step's threads share (`Shared`).

use super::attention::decode_head;
use crate::cpu::rope::{rope_forward_span, RopeTable};
use std::marker::PhantomData;
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

/// A buffer that the participants of one step write in disjoint parts, and read only in phases
/// where nobody writes it (the phase order guarantees both; see each use).
pub(super) struct Shared<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: Shared is a &mut [f32] handed to several threads; every access goes through the unsafe
// methods below, whose callers guarantee that no element is written by one thread while another
// thread reads or writes it.
unsafe impl Sync for Shared<'_> {}

impl<'a> Shared<'a> {
    pub(super) fn new(buf: &'a mut [f32]) -> Shared<'a> {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    /// # Safety
    /// While the slice lives, no other thread may read or write `range`.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn part(&self, range: Range<usize>) -> &mut [f32] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "Shared::part: out of bounds"
        );
        // SAFETY: in bounds (asserted); exclusive by the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }

    /// # Safety
    /// While the slice lives, no thread may write any of the buffer.
    pub(super) unsafe fn all(&self) -> &[f32] {
        // SAFETY: the whole buffer; no writer by the caller's guarantee.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// # Safety
    /// No other thread may read or write element `i` at the same time.
    pub(super) unsafe fn write(&self, i: usize, value: f32) {
        assert!(i < self.len, "Shared::write: out of bounds");
        // SAFETY: in bounds (asserted); exclusive by the caller's guarantee.
        unsafe { self.ptr.add(i).write(value) }
    }
}

/// The KV cache of batch 1 as `decode_step` uses it: per layer, keys and values (max_len, d) and
/// the keys transposed per head (n_heads, d_head, max_len), layer l at offset l·max_len·d.
pub struct CacheRefs<'a> {
    pub k: &'a mut [f32],
    pub v: &'a mut [f32],
    pub k_t: &'a mut [f32],
    pub max_len: usize,
    pub rope: Option<&'a RopeTable>,
}
