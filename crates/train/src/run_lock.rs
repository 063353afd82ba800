//! The run directory's lock: one training process writes a run directory at a time.
//!
//! `train` holds an exclusive advisory lock (flock) on `RUN_DIR/.lock` from before it reads the
//! directory's checkpoints until it ends; a second `train` on the same directory (a second
//! terminal, a job started twice, srun tasks that MPI did not join) stops at once, naming the
//! holder's pid, instead of both writing checkpoints and metrics over each other. The operating
//! system drops the lock when the holder exits in any way (kill -9 included), so it never goes
//! stale; the file itself stays and is harmless.

use anyhow::{bail, Context, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The held lock (released on drop, or when the process ends).
pub struct RunLock {
    _file: File,
}

/// Takes the lock of `run_dir` (which must exist), or fails naming the process that holds it.
pub fn lock(run_dir: &Path) -> Result<RunLock> {
    let path = run_dir.join(".lock");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the run directory's lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another process (pid {holder})")
            };
            bail!(
                "run directory {} is being trained by {who}: wait for it to end, or give another \
                 --run-dir",
                run_dir.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    // The holder's pid, for the message above; best effort (the lock is what counts).
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let first = lock(d.path()).unwrap();
        let err = format!("{:#}", lock(d.path()).err().expect("a second lock was taken"));
        assert!(err.contains("is being trained by another process (pid"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        lock(d.path()).expect("the lock was not freed on drop");
    }
}
