//! Token files and batches: .npy parsing and its errors, get_batch bounds and shift, sequential
//! order, the fixed validation windows.

#[path = "common/shared.rs"]
mod shared;

use ferrolm_nn::Rng;
use ferrolm_train::data::{
    get_batch, validation_starts, write_npy, BatchSampler, Sampling, TokenDtype, TokenFile,
};
use shared::assert_mentions;
use std::path::Path;

fn err_of(path: &Path) -> String {
    format!("{:#}", TokenFile::open(path).unwrap_err())
}

/// A raw .npy file with the given header dict and data bytes (v1 header, no padding rules).
fn raw_npy(path: &Path, dict: &str, data: &[u8]) {
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let h = format!("{dict}\n");
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

#[test]
fn npy_round_trips_in_both_dtypes_with_numpy_header_layout() {
    let d = tempfile::tempdir().unwrap();
    let toks: Vec<u32> = (0..1000).map(|i| (i * 37) % 65536).collect();
    for (dt, big) in [(TokenDtype::U16, 65535u32), (TokenDtype::U32, 1 << 30)] {
        let p = d.path().join(format!("{dt:?}.npy"));
        let mut t = toks.clone();
        t.push(big);
        write_npy(&p, &t, dt).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // numpy aligns the data to 64 bytes.
        assert_eq!((bytes.len() - t.len() * dt.size()) % 64, 0);
        let f = TokenFile::open(&p).unwrap();
        assert_eq!(f.dtype(), dt);
        assert_eq!(f.len(), t.len());
        assert_eq!(f.to_vec(), t);
        assert_eq!(f.get(1000), big);
    }
    // A u16 file cannot hold 65536.
    assert!(write_npy(d.path().join("x.npy"), &[65536], TokenDtype::U16).is_err());
}

#[test]
fn corrupt_or_unsupported_files_are_errors_naming_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.npy");

    std::fs::write(&p, b"hello world, not numpy").unwrap();
    let e = err_of(&p);
    assert_mentions(&e, &["bad.npy", "magic", "offset 0"]);

    std::fs::write(&p, b"").unwrap();
    assert!(err_of(&p).contains("not a .npy file"));

    // (header, data bytes, what the error must name)
    let cases: [(&str, usize, &[&str]); 5] = [
        (
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
            16,
            &["bad.npy", "'<i8'", "offset 10"],
        ),
        (
            "{'descr': '<u2', 'fortran_order': True, 'shape': (2,), }",
            4,
            &["Fortran"],
        ),
        (
            "{'descr': '<u2', 'fortran_order': False, 'shape': (2, 2), }",
            8,
            &["one-dimensional", "(2, 2)"],
        ),
        // Truncated data: the header says 10 elements, 7 are there.
        (
            "{'descr': '<u4', 'fortran_order': False, 'shape': (10,), }",
            28,
            &["bad.npy", "truncated", "28 data bytes"],
        ),
        // Trailing garbage is also caught.
        (
            "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }",
            6,
            &["longer than its header"],
        ),
    ];
    for (header, data_bytes, names) in cases {
        raw_npy(&p, header, &vec![0; data_bytes]);
        let e = err_of(&p);
        assert!(names.iter().all(|n| e.contains(n)), "{header}: {e}");
    }

    // Truncated header.
    let full = {
        write_npy(&p, &[1, 2, 3], TokenDtype::U16).unwrap();
        std::fs::read(&p).unwrap()
    };
    std::fs::write(&p, &full[..40]).unwrap();
    let e = err_of(&p);
    assert!(e.contains("truncated .npy header"), "{e}");

    // Unsupported version.
    let mut v9 = full.clone();
    v9[6] = 9;
    std::fs::write(&p, v9).unwrap();
    assert!(err_of(&p).contains("version 9"));

    // Missing file.
    assert!(err_of(&d.path().join("nope.npy")).contains("nope.npy"));
}

#[test]
fn ids_outside_the_vocab_and_short_files_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.npy");
    let mut t = vec![3u32; 5000];
    t[4321] = 100;
    write_npy(&p, &t, TokenDtype::U16).unwrap();
    let f = TokenFile::open(&p).unwrap();
    f.check_ids(101).unwrap();
    let e = format!("{:#}", f.check_ids(100).unwrap_err());
    // 128-byte header (padded to a multiple of 64) + 2 bytes per element.
    assert!(
        e.contains("t.npy")
            && e.contains("token id 100")
            && e.contains("index 4321")
            && e.contains("byte offset 8770"),
        "{e}"
    );

    write_npy(&p, &[1, 2, 3, 4], TokenDtype::U16).unwrap();
    let f = TokenFile::open(&p).unwrap();
    f.check_fits(3).unwrap();
    let e = format!("{:#}", f.check_fits(4).unwrap_err());
    assert_mentions(&e, &["t.npy", "too short", "context length 4"]);
    let mut rng = Rng::new(0);
    assert!(get_batch(&f, 2, 4, &mut rng).is_err());
}

#[test]
fn get_batch_starts_cover_exactly_0_to_n_minus_ctx_minus_1_and_targets_are_shifted() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.npy");
    let n = 40;
    // Token i has value i, so a window reveals its start.
    write_npy(&p, &(0..n as u32).collect::<Vec<_>>(), TokenDtype::U32).unwrap();
    let f = TokenFile::open(&p).unwrap();
    let ctx = 8;
    let mut rng = Rng::new(5);
    let mut seen = vec![false; n];
    for _ in 0..500 {
        let (x, y) = get_batch(&f, 4, ctx, &mut rng).unwrap();
        assert_eq!((x.len(), y.len()), (4 * ctx, 4 * ctx));
        for b in 0..4 {
            let row = &x[b * ctx..(b + 1) * ctx];
            let s = row[0] as usize;
            assert!(s + ctx < n, "start {s} leaves no target for the last position");
            seen[s] = true;
            for j in 0..ctx {
                assert_eq!(row[j] as usize, s + j, "inputs are a contiguous window");
                assert_eq!(y[b * ctx + j], row[j] + 1, "targets are inputs shifted by one");
            }
        }
    }
    // Every start in 0..=n-ctx-1 occurs (uniform over 32 values, 2000 draws), none beyond.
    assert!(seen[..n - ctx].iter().all(|&s| s), "{seen:?}");
    assert!(seen[n - ctx..].iter().all(|&s| !s));
    // Same seed, same batches.
    let a = get_batch(&f, 3, ctx, &mut Rng::new(9)).unwrap();
    let b = get_batch(&f, 3, ctx, &mut Rng::new(9)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn sequential_mode_takes_windows_in_order_and_wraps() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.npy");
    // 23 tokens, ctx 5: windows start at 0, 5, 10, 15 (the last needs token 20); 4 windows.
    write_npy(&p, &(100..123).collect::<Vec<_>>(), TokenDtype::U16).unwrap();
    let f = TokenFile::open(&p).unwrap();
    let mut s = BatchSampler::new(Sampling::Sequential, Rng::new(0));
    let (mut x, mut y) = (vec![0; 3 * 5], vec![0; 3 * 5]);
    let mut starts = Vec::new();
    for _ in 0..3 {
        s.fill(&f, 5, &mut x, &mut y).unwrap();
        for b in 0..3 {
            starts.push(x[b * 5] - 100);
            assert_eq!(
                &y[b * 5..b * 5 + 5],
                &x[b * 5..b * 5 + 5].iter().map(|v| v + 1).collect::<Vec<_>>()[..]
            );
        }
    }
    assert_eq!(starts, vec![0, 5, 10, 15, 0, 5, 10, 15, 0]);
    // The state (cursor) round-trips through JSON, as in a checkpoint.
    let json = serde_json::to_string(&s).unwrap();
    let mut s2: BatchSampler = serde_json::from_str(&json).unwrap();
    s.fill(&f, 5, &mut x, &mut y).unwrap();
    let mut x2 = vec![0; 15];
    s2.fill(&f, 5, &mut x2, &mut y).unwrap();
    assert_eq!(x, x2);
    assert_eq!(x[0] - 100, 5);
}

#[test]
fn validation_windows_are_fixed_non_overlapping_and_spread() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("v.npy");
    write_npy(&p, &vec![1; 101], TokenDtype::U16).unwrap();
    let f = TokenFile::open(&p).unwrap();
    assert_eq!(
        validation_starts(&f, 10, None).unwrap(),
        (0..10).map(|i| i * 10).collect::<Vec<_>>()
    );
    let some = validation_starts(&f, 10, Some(4)).unwrap();
    assert_eq!(some, vec![0, 20, 50, 70]);
    assert_eq!(some, validation_starts(&f, 10, Some(4)).unwrap());
    assert_eq!(validation_starts(&f, 10, Some(1000)).unwrap().len(), 10);
}
