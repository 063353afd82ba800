//! Helpers shared by the unit tests: rayon pools of a given size, for the checks that a kernel
//! gives the same result on any thread count.

/// A rayon pool of `threads` threads.
pub(crate) fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

/// Runs `f(threads, pool)` for each thread count of `counts`, `pool` having that many threads.
pub(crate) fn for_each_pool(counts: &[usize], mut f: impl FnMut(usize, &rayon::ThreadPool)) {
    for &threads in counts {
        f(threads, &pool(threads));
    }
}
