//! Phased work sharing for short, latency-bound parallel jobs (one decode step): a sequence of
//! phases, each a number of independent chunks, run by the calling thread and up to
//! `locals.len() − 1` rayon helpers that are woken ONCE for the whole job instead of once per
//! phase.
//!
//! Every participant claims chunks in one global order (phase 0's chunks, then phase 1's, ...)
//! from a shared counter, and before working on a chunk of phase p it spins until every chunk of
//! the phases before p is done. There are no fixed shares: a helper that starts late (a sleeping
//! worker takes tens of µs to wake) or never (a busy pool) only means the others take more chunks,
//! so the job cannot deadlock, with one thread, or when called from inside a rayon task.
//! A participant only ever holds one claimed chunk and waits only on chunks claimed before it, so
//! the chunk that everybody waits for always belongs to a thread that is working on it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One counter per cache line (the two are written by different threads at different moments).
#[repr(align(128))]
struct Padded(AtomicUsize);

/// Shared progress of one job: chunks handed out and chunks finished, counted over all phases.
struct Progress {
    claimed: Padded,
    done: Padded,
}

/// Spins (then yields, so a descheduled chunk holder can run) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) {
    const SPINS: u32 = 1 << 11;
    let mut n = 0u32;
    while !cond() {
        if n < SPINS {
            std::hint::spin_loop();
            n += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs phases `0..chunks.len()` in order, phase p made of `chunks[p]` chunks (0 allowed): for
/// each, `work(local, p, c)` for every c in `0..chunks[p]`, each exactly once, on whichever
/// participant claims it; all chunks of phase p finish before any of phase p + 1 starts (their
/// writes are visible to it). Before its first chunk of a phase a participant calls
/// `prepare(local, p)` (per-thread set-up that reads what earlier phases wrote, e.g. a norm).
///
/// Participants: the calling thread with `locals[0]` and `locals.len() − 1` rayon helpers with the
/// others (spawned into the current pool). Returns when every chunk is done.
pub fn run_phased<L, P, W>(chunks: &[usize], locals: &mut [L], prepare: P, work: W)
where
    L: Send,
    P: Fn(&mut L, usize) + Sync,
    W: Fn(&mut L, usize, usize) + Sync,
{
    let total: usize = chunks.iter().sum();
    let progress = Progress {
        claimed: Padded(AtomicUsize::new(0)),
        done: Padded(AtomicUsize::new(0)),
    };
    let participate = |local: &mut L| {
        // Phase of the last claimed chunk and the global index of its first chunk.
        let (mut phase, mut base) = (0, 0);
        let mut prepared = usize::MAX;
        loop {
            let g = progress.claimed.0.fetch_add(1, Ordering::Relaxed);
            if g >= total {
                return;
            }
            while g >= base + chunks[phase] {
                base += chunks[phase];
                phase += 1;
            }
            // Acquire: pairs with the Release increments of every chunk before this phase.
            wait_until(|| progress.done.0.load(Ordering::Acquire) >= base);
            if prepared != phase {
                prepare(local, phase);
                prepared = phase;
            }
            work(local, phase, g - base);
            progress.done.0.fetch_add(1, Ordering::Release);
        }
    };
    let Some((first, helpers)) = locals.split_first_mut() else {
        panic!("run_phased: no participant (locals is empty)");
    };
    let finish = || wait_until(|| progress.done.0.load(Ordering::Acquire) >= total);
    if helpers.is_empty() || total <= 1 {
        participate(first);
        finish();
        return;
    }
    rayon::in_place_scope(|s| {
        for local in helpers {
            let participate = &participate;
            s.spawn(move |_| participate(local));
        }
        participate(first);
        finish();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;
    use std::sync::atomic::AtomicU32;

    /// Each chunk checks that every chunk of the earlier phases is already done and that it is
    /// run exactly once; `prepare` sees the finished earlier phases too.
    fn check(chunks: &[usize], participants: usize) {
        let offsets: Vec<usize> = chunks
            .iter()
            .scan(0, |s, &c| {
                let o = *s;
                *s += c;
                Some(o)
            })
            .collect();
        let total: usize = chunks.iter().sum();
        let runs: Vec<AtomicU32> = (0..total).map(|_| AtomicU32::new(0)).collect();
        let phase_done = |p: usize| {
            runs[offsets[p]..offsets[p] + chunks[p]]
                .iter()
                .all(|r| r.load(Ordering::Relaxed) == 1)
        };
        let mut locals: Vec<(usize, usize)> = vec![(0, 0); participants];
        run_phased(
            chunks,
            &mut locals,
            |l, p| {
                assert!(
                    (0..p).all(phase_done),
                    "prepare of phase {p} before the earlier ones finished"
                );
                l.0 += 1;
            },
            |l, p, c| {
                assert!(c < chunks[p]);
                assert!((0..p).all(phase_done), "phase {p} started early");
                // A little work, so the helpers get chunks too.
                std::hint::black_box((0..200).sum::<usize>());
                runs[offsets[p] + c].fetch_add(1, Ordering::Relaxed);
                l.1 += 1;
            },
        );
        assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
        assert_eq!(locals.iter().map(|l| l.1).sum::<usize>(), total);
    }

    #[test]
    fn every_chunk_runs_once_after_the_earlier_phases_with_1_2_and_3_threads() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for chunks in [&[1][..], &[3, 0, 5, 1], &[0, 0], &[7; 21], &[2, 40, 1, 1, 9]] {
                for participants in [1, threads, threads + 2] {
                    // From inside the pool and from a thread outside it.
                    pool.install(|| check(chunks, participants));
                    check(chunks, participants);
                }
            }
        }
    }

    #[test]
    fn no_deadlock_when_every_worker_is_busy_with_its_own_job() {
        // Each worker of a 2-thread pool runs a job that wants 3 participants; the helpers it
        // spawns can only run once some worker is free, so the callers must finish on their own.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            rayon::join(|| check(&[5, 5, 5], 3), || check(&[4, 1, 6], 3));
            (0..8).into_par_iter().for_each(|_| {
                rayon::scope(|s| {
                    s.spawn(|_| check(&[3, 3], 2));
                    s.spawn(|_| check(&[2, 9], 2));
                    check(&[6], 2);
                });
            });
        });
        // A 1-thread pool, with the only worker the caller.
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        one.install(|| check(&[3, 4, 5], 2));
    }
}
