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
//!
//! The helpers belong to a `Team` that outlives the jobs: after a job they spin for `LINGER` and
//! join the next one directly, so consecutive jobs (the tokens of a generation) wake the pool once.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a helper stays awake after a job, spinning for the next one, before it returns to
/// the pool: longer than the gap between two tokens (sampling), so a generation wakes its helpers
/// once instead of once per token (a wake-up measured 40–110 µs here, with the caller alone).
const LINGER: Duration = Duration::from_millis(1);

/// One counter per cache line (they are written by different threads at different moments).
#[repr(align(128))]
struct Padded(AtomicUsize);

/// Shared progress of one job: chunks handed out and chunks finished, counted over all phases;
/// `abort` when a participant panicked (the others stop instead of waiting for its chunk).
struct Progress {
    claimed: Padded,
    done: Padded,
    abort: AtomicBool,
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

/// Helpers for the jobs of one caller (e.g. the tokens of one generation): rayon jobs that stay
/// awake for `LINGER` after each job and join the next one without a wake-up. Cheap to create;
/// the helpers hold it only while they linger.
#[derive(Default)]
pub struct Team {
    shared: Arc<TeamShared>,
}

#[derive(Default)]
struct TeamShared {
    /// Odd while a job is open for helpers to join: bumped once to open and once to close it.
    epoch: Padded,
    /// The open job, a `JobRef` on the caller's stack; valid for a helper that saw the epoch odd
    /// after counting itself in `in_job`, until it leaves `in_job`.
    job: AtomicPtr<()>,
    /// Helpers inside the open job (or about to check whether they may enter it).
    in_job: Padded,
    /// Helper loops spawned and not yet returned to the pool.
    alive: AtomicUsize,
}

impl Default for Padded {
    fn default() -> Self {
        Padded(AtomicUsize::new(0))
    }
}

/// What a helper runs in a job: it picks its own slot.
struct JobRef<'a> {
    run: &'a (dyn Fn() + Sync),
}

/// A helper's life: join every job opened while it lingers, then return to the pool.
fn helper_loop(team: Arc<TeamShared>) {
    let mut seen = usize::MAX;
    let mut idle_since = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = team.epoch.0.load(Ordering::SeqCst);
        if !e.is_multiple_of(2) && e != seen {
            seen = e;
            team.in_job.0.fetch_add(1, Ordering::SeqCst);
            // Counted in in_job before this check, so the caller cannot have closed the job and
            // returned unless the check fails (it closes, then waits for in_job to drop to 0).
            if team.epoch.0.load(Ordering::SeqCst) == e {
                let job = team.job.load(Ordering::SeqCst) as *const JobRef<'_>;
                // SAFETY: the job is open (epoch e, checked after joining in_job), so `job` points
                // to the caller's JobRef, which lives until in_job is 0 again.
                unsafe { ((*job).run)() };
            }
            team.in_job.0.fetch_sub(1, Ordering::SeqCst);
            idle_since = Instant::now();
            continue;
        }
        spins += 1;
        if spins.is_multiple_of(64) && idle_since.elapsed() > LINGER {
            break;
        }
        if spins.is_multiple_of(1024) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    team.alive.fetch_sub(1, Ordering::SeqCst);
}

/// Closes the open job when the caller leaves `run_phased` (also by a panic): after it no helper
/// can enter, and it waits until those inside have left, so the job's stack data outlives them.
struct CloseJob<'a> {
    team: &'a TeamShared,
    progress: &'a Progress,
}

impl Drop for CloseJob<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.progress.abort.store(true, Ordering::SeqCst);
        }
        self.team.epoch.0.fetch_add(1, Ordering::SeqCst);
        wait_until(|| self.team.in_job.0.load(Ordering::SeqCst) == 0);
    }
}

/// Runs phases `0..chunks.len()` in order, phase p made of `chunks[p]` chunks (0 allowed): for
/// each, `work(local, p, c)` for every c in `0..chunks[p]`, each exactly once, on whichever
/// participant claims it; all chunks of phase p finish before any of phase p + 1 starts (their
/// writes are visible to it). Before its first chunk of a phase a participant calls
/// `prepare(local, p)` (per-thread set-up that reads what earlier phases wrote, e.g. a norm).
///
/// Participants: the calling thread with `locals[0]` and up to `locals.len() − 1` helpers of
/// `team` with the others (rayon jobs in the current pool, spawned when too few linger). Returns
/// when every chunk is done. A panic in `work` or `prepare` reaches the caller. `&mut Team`: one
/// job at a time per team.
pub fn run_phased<L, P, W>(team: &mut Team, chunks: &[usize], locals: &mut [L], prepare: P, work: W)
where
    L: Send,
    P: Fn(&mut L, usize) + Sync,
    W: Fn(&mut L, usize, usize) + Sync,
{
    assert!(!locals.is_empty(), "run_phased: no participant (locals is empty)");
    let total: usize = chunks.iter().sum();
    let progress = Progress {
        claimed: Padded(AtomicUsize::new(0)),
        done: Padded(AtomicUsize::new(0)),
        abort: AtomicBool::new(false),
    };
    let aborted = || progress.abort.load(Ordering::Relaxed);
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
            wait_until(|| progress.done.0.load(Ordering::Acquire) >= base || aborted());
            if aborted() {
                return;
            }
            if prepared != phase {
                prepare(local, phase);
                prepared = phase;
            }
            work(local, phase, g - base);
            progress.done.0.fetch_add(1, Ordering::Release);
        }
    };
    let finish = || {
        wait_until(|| progress.done.0.load(Ordering::Acquire) >= total || aborted());
        assert!(!aborted(), "run_phased: a helper panicked");
    };
    let helpers = locals.len() - 1;
    if helpers == 0 || total <= 1 {
        participate(&mut locals[0]);
        return finish();
    }
    // Slot 0 is the caller's; helpers take the next free one (one each, so each &mut is unique).
    let slots = locals.as_mut_ptr() as usize;
    let joined = AtomicUsize::new(1);
    let helper = || {
        let slot = joined.fetch_add(1, Ordering::Relaxed);
        if slot > helpers {
            return;
        }
        // SAFETY: slot ≤ helpers < locals.len(), taken by this thread alone (fetch_add), and the
        // caller touches only slot 0; locals outlives the job (the caller waits in CloseJob).
        let local = unsafe { &mut *(slots as *mut L).add(slot) };
        if panic::catch_unwind(AssertUnwindSafe(|| participate(local))).is_err() {
            progress.abort.store(true, Ordering::SeqCst);
        }
    };
    let job = JobRef { run: &helper };
    let t = &*team.shared;
    t.job
        .store(&job as *const JobRef<'_> as *mut (), Ordering::SeqCst);
    t.epoch.0.fetch_add(1, Ordering::SeqCst);
    let _close = CloseJob {
        team: t,
        progress: &progress,
    };
    while t.alive.load(Ordering::SeqCst) < helpers {
        t.alive.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(&team.shared);
        rayon::spawn(move || helper_loop(shared));
    }
    // SAFETY: slot 0 is the caller's alone (helpers start at 1).
    participate(unsafe { &mut *(slots as *mut L) });
    finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{for_each_pool, pool};
    use rayon::prelude::*;
    use std::sync::atomic::AtomicU32;

    /// Each chunk checks that every chunk of the earlier phases is already done and that it is
    /// run exactly once; `prepare` sees the finished earlier phases too.
    fn check(team: &mut Team, chunks: &[usize], participants: usize) {
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
            team,
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
        for_each_pool(&[1, 2, 3], |threads, pool| {
            // One team for many jobs (its helpers linger from one to the next), and fresh ones.
            let mut team = Team::default();
            for chunks in [&[1][..], &[3, 0, 5, 1], &[0, 0], &[7; 21], &[2, 40, 1, 1, 9]] {
                for participants in [1, threads, threads + 2] {
                    // From inside the pool and from a thread outside it.
                    pool.install(|| check(&mut team, chunks, participants));
                    check(&mut team, chunks, participants);
                    pool.install(|| check(&mut Team::default(), chunks, participants));
                }
            }
        });
    }

    #[test]
    fn no_deadlock_when_every_worker_is_busy_with_its_own_job() {
        // Each worker of a 2-thread pool runs jobs that want 3 participants; the helpers they
        // spawn can only run once some worker is free, so the callers must finish on their own.
        pool(2).install(|| {
            let (mut a, mut b) = (Team::default(), Team::default());
            rayon::join(
                || (0..20).for_each(|_| check(&mut a, &[5, 5, 5], 3)),
                || (0..20).for_each(|_| check(&mut b, &[4, 1, 6], 3)),
            );
            (0..8).into_par_iter().for_each(|_| {
                let mut team = Team::default();
                rayon::scope(|s| {
                    s.spawn(|_| check(&mut Team::default(), &[3, 3], 2));
                    s.spawn(|_| check(&mut Team::default(), &[2, 9], 2));
                    check(&mut team, &[6], 2);
                });
            });
        });
        // A 1-thread pool, with the only worker the caller.
        let one = pool(1);
        let mut team = Team::default();
        for _ in 0..5 {
            one.install(|| check(&mut team, &[3, 4, 5], 2));
        }
    }

    #[test]
    fn a_panic_in_a_chunk_reaches_the_caller_without_hanging() {
        let two = pool(2);
        let mut team = Team::default();
        for bad in [0, 7, 11] {
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                two.install(|| {
                    run_phased(
                        &mut team,
                        &[4, 6, 4],
                        &mut [(), (), ()],
                        |_, _| {},
                        |_, p, c| {
                            std::hint::black_box((0..2000).sum::<usize>());
                            assert!(p * 4 + c != bad, "chunk {bad}");
                        },
                    )
                })
            }));
            assert!(result.is_err(), "the panic of chunk {bad} was lost");
        }
        // The team still works afterwards.
        two.install(|| check(&mut team, &[3, 3], 2));
    }
}
