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

/// The (m, n, k) shapes of the product tests (C (m, n) = A (m, k) · B (k, n)), one list for
/// every kernel: single elements and k = 1; edges that are not multiples of any tile, register
/// block or vector (7, 9, 13, 17, 33, 37, 53, 127); exactly one block (32³); several k-blocks
/// (700–1100); tall (4500 rows: many row blocks) and wide (200 columns) operands.
pub(crate) const GEMM_SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (8, 48, 1),
    (7, 5, 3),
    (127, 9, 5),
    (13, 33, 8),
    (9, 16, 17),
    (32, 32, 32),
    (37, 64, 40),
    (4500, 20, 40),
    (300, 17, 33),
    (5, 200, 64),
    (130, 65, 64),
    (37, 53, 70),
    (512, 96, 700),
    (300, 70, 999),
    (64, 96, 1100),
];
