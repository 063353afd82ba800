//! The merge core of encoding: applies merges by rank to the bytes of one pre-token, like tiktoken's
//! `byte_pair_merge` but on token ids and pair ranks (exact BPE for any vocab/merges files).

use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const NO_RANK: u32 = u32::MAX;
/// Pre-tokens longer than this use the O(n log n) heap merge instead of the O(n^2) scan.
pub(crate) const HEAP_THRESHOLD: usize = 128;

/// Merge rules: the pair (left id, right id) merges at `rank` into `id`.
#[derive(Clone, Debug)]
pub(crate) struct MergeTable {
    pairs: FxHashMap<u64, (u32, u32)>,
    pub(crate) byte_ids: [u32; 256],
}

/// Reusable buffers of [`MergeTable::encode_piece`].
#[derive(Default)]
pub(crate) struct Scratch {
    syms: Vec<u32>,
    ranks: Vec<(u32, u32)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    heap: BinaryHeap<Reverse<(u32, usize)>>,
}

#[inline(always)]
fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

impl MergeTable {
    /// `merges[r] = (left, right, merged)` is the merge of rank `r`.
    pub(crate) fn new(merges: &[(u32, u32, u32)], byte_ids: [u32; 256]) -> Self {
        let mut pairs = FxHashMap::default();
        pairs.reserve(merges.len());
        for (rank, &(a, b, id)) in merges.iter().enumerate() {
            // The first (lowest-rank) rule for a pair wins, as in HF tokenizers.
            pairs.entry(key(a, b)).or_insert((rank as u32, id));
        }
        MergeTable { pairs, byte_ids }
    }

    #[inline(always)]
    fn rank(&self, a: u32, b: u32) -> (u32, u32) {
        self.pairs.get(&key(a, b)).copied().unwrap_or((NO_RANK, 0))
    }

    /// Appends the ids of `bytes` (one pre-token) to `out`.
    #[inline]
    pub(crate) fn encode_piece(&self, bytes: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        match bytes.len() {
            0 => {}
            1 => out.push(self.byte_ids[bytes[0] as usize]),
            n if n > HEAP_THRESHOLD => self.merge_heap(bytes, out, s),
            _ => self.merge_scan(bytes, out, s),
        }
    }

    /// Repeatedly merges the lowest-rank adjacent pair (leftmost on ties).
    pub(crate) fn merge_scan(&self, bytes: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        let syms = &mut s.syms;
        let ranks = &mut s.ranks;
        syms.clear();
        syms.extend(bytes.iter().map(|&b| self.byte_ids[b as usize]));
        ranks.clear();
        ranks.extend(syms.windows(2).map(|w| self.rank(w[0], w[1])));
        loop {
            let mut best = NO_RANK;
            let mut at = 0;
            for (i, &(r, _)) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NO_RANK {
                break;
            }
            syms[at] = ranks[at].1;
            syms.remove(at + 1);
            ranks.remove(at);
            if at > 0 {
                ranks[at - 1] = self.rank(syms[at - 1], syms[at]);
            }
            if at < ranks.len() {
                ranks[at] = self.rank(syms[at], syms[at + 1]);
            }
        }
        out.extend_from_slice(syms);
    }

    /// Same result as [`Self::merge_scan`] in O(n log n): a linked list of symbols and a heap of
    /// (rank, position) with lazy invalidation.
    pub(crate) fn merge_heap(&self, bytes: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        const NONE: usize = usize::MAX;
        let n = bytes.len();
        let (syms, next, prev, heap) = (&mut s.syms, &mut s.next, &mut s.prev, &mut s.heap);
        syms.clear();
        syms.extend(bytes.iter().map(|&b| self.byte_ids[b as usize]));
        next.clear();
        next.extend((1..=n).map(|i| if i == n { NONE } else { i }));
        prev.clear();
        prev.extend((0..n).map(|i| if i == 0 { NONE } else { i - 1 }));
        heap.clear();
        for i in 0..n - 1 {
            let (r, _) = self.rank(syms[i], syms[i + 1]);
            if r != NO_RANK {
                heap.push(Reverse((r, i)));
            }
        }
        let mut alive = vec![true; n];
        while let Some(Reverse((r, i))) = heap.pop() {
            if !alive[i] || next[i] == NONE {
                continue;
            }
            let j = next[i];
            let (cur, id) = self.rank(syms[i], syms[j]);
            if cur != r {
                continue; // stale: the pair at i changed since this entry was pushed
            }
            syms[i] = id;
            alive[j] = false;
            next[i] = next[j];
            if next[j] != NONE {
                prev[next[j]] = i;
            }
            if prev[i] != NONE {
                let (r, _) = self.rank(syms[prev[i]], syms[i]);
                if r != NO_RANK {
                    heap.push(Reverse((r, prev[i])));
                }
            }
            if next[i] != NONE {
                let (r, _) = self.rank(syms[i], syms[next[i]]);
                if r != NO_RANK {
                    heap.push(Reverse((r, i)));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(syms[i]);
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{train_bpe_from_str, Tokenizer};
    use proptest::prelude::*;

    fn tokenizer() -> Tokenizer {
        let text = "aaaa abab aaab baaa the then there their theirs aaaaaaaa banana bandana ".repeat(30);
        let (vocab, merges) = train_bpe_from_str(&text, 300, &[]).unwrap();
        Tokenizer::new(vocab, &merges, &[]).unwrap()
    }

    proptest! {
        #[test]
        fn heap_merge_equals_scan_merge(s in "[abnthe ]{0,300}") {
            let tok = tokenizer();
            let (mut scan, mut heap) = (Vec::new(), Vec::new());
            let mut scratch = Scratch::default();
            if !s.is_empty() {
                tok.table().merge_scan(s.as_bytes(), &mut scan, &mut scratch);
                tok.table().merge_heap(s.as_bytes(), &mut heap, &mut scratch);
            }
            prop_assert_eq!(&scan, &heap);
            prop_assert_eq!(tok.decode_bytes(&scan).unwrap(), s.as_bytes());
        }
    }
}
