//! Inter-process file locks (`flock` on Unix through `std::fs::File::lock`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::CacheError;

/// Shared (many holders) or exclusive (one holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Many processes may hold it together.
    Shared,
    /// One process holds it alone.
    Exclusive,
}

/// An open, locked file. The lock is released when this is dropped or the process dies.
#[derive(Debug)]
pub struct LockedFile {
    /// `None` on a read-only cache without this lock file: nobody can hold it.
    file: Option<std::fs::File>,
    path: PathBuf,
    read_only: bool,
}

/// Opens a lock file for locking, creating it if needed. On a read-only cache (an image's baked
/// cache mounted read-only) an existing lock file is opened read-only: `flock` works on any
/// open file, so readers still exclude `cache clean` and wait for builders. A lock file that
/// does not exist there cannot be locked by anyone, so `Ok(None)`: there is nothing to wait for.
fn open(path: &Path) -> Result<Opened, CacheError> {
    let io = |e| CacheError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    match fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(file) => Ok((Some(file.into_parts().0), false)),
        Err(err) if read_only(&err) => match fs_err::File::open(path) {
            Ok(file) => Ok((Some(file.into_parts().0), true)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, true)),
            Err(e) => Err(io(e)),
        },
        Err(err) => Err(io(err)),
    }
}

/// The open lock file (if it exists), and whether it could only be opened read-only.
type Opened = (Option<std::fs::File>, bool);

/// Whether an error says the file system (or the file) cannot be written.
#[must_use]
pub fn read_only(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
    )
}

/// Whether the open `file` is still the file at `path`. `cache prune` unlinks a lock file
/// while holding its lock; a process that opened the old file before that and locked it
/// after holds a lock on a dead inode, while a third process creates and locks a new file at
/// the path: two "exclusive" holders (issue 23). A lock counts only on the file at the path.
fn still_at_path(file: &std::fs::File, path: &Path) -> Result<bool, CacheError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let held = file.metadata().map_err(crate::io(path))?;
        match fs_err::metadata(path) {
            Ok(current) => Ok(current.dev() == held.dev() && current.ino() == held.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(crate::io(path)(e)),
        }
    }
    #[cfg(not(unix))]
    {
        // Windows cannot delete an open file: the race does not exist there.
        let _ = (file, path);
        Ok(true)
    }
}

impl LockedFile {
    /// Opens (creating if needed) and locks `path`, waiting as long as it takes.
    pub fn acquire_blocking(path: &Path, kind: LockKind) -> Result<Self, CacheError> {
        loop {
            let (file, read_only) = open(path)?;
            if let Some(file) = &file {
                let result = match kind {
                    LockKind::Shared => file.lock_shared(),
                    LockKind::Exclusive => file.lock(),
                };
                result.map_err(crate::io(path))?;
                if !still_at_path(file, path)? {
                    // Unlinked (or replaced) while we waited: lock the file there now.
                    continue;
                }
            }
            return Ok(Self {
                file,
                path: path.to_path_buf(),
                read_only,
            });
        }
    }

    /// Tries to lock `path` without waiting; `Ok(None)` if another process holds it.
    pub fn try_acquire(path: &Path, kind: LockKind) -> Result<Option<Self>, CacheError> {
        loop {
            let (Some(file), read_only) = open(path)? else {
                return Ok(Some(Self {
                    file: None,
                    path: path.to_path_buf(),
                    read_only: true,
                }));
            };
            let result = match kind {
                LockKind::Shared => file.try_lock_shared(),
                LockKind::Exclusive => file.try_lock(),
            };
            match result {
                // Unlinked between our open and our lock: try the file there now.
                Ok(()) if !still_at_path(&file, path)? => {}
                Ok(()) => {
                    return Ok(Some(Self {
                        file: Some(file),
                        path: path.to_path_buf(),
                        read_only,
                    }));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(CacheError::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
    }

    /// Locks `path`, calling `on_wait` once if the lock is busy and then every
    /// `report_every`, and giving up after `timeout` (`None`: wait forever).
    pub fn acquire(
        path: &Path,
        kind: LockKind,
        timeout: Option<Duration>,
        report_every: Duration,
        mut on_wait: impl FnMut(Duration),
    ) -> Result<Self, CacheError> {
        if let Some(lock) = Self::try_acquire(path, kind)? {
            return Ok(lock);
        }
        let start = Instant::now();
        on_wait(Duration::ZERO);
        let mut next_report = report_every;
        let mut delay = Duration::from_millis(5);
        loop {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
            if let Some(lock) = Self::try_acquire(path, kind)? {
                return Ok(lock);
            }
            let waited = start.elapsed();
            if timeout.is_some_and(|t| waited >= t) {
                return Err(CacheError::LockTimeout {
                    path: path.to_path_buf(),
                    seconds: waited.as_secs(),
                    held_by: held_by(path),
                });
            }
            if waited >= next_report {
                on_wait(waited);
                next_report += report_every;
            }
        }
    }

    /// The lock file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock file lives on a read-only file system (or cannot be written by us):
    /// the cache can be read but not built into.
    #[must_use]
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The open file (e.g. to pass the lock on to a child process); `None` on a read-only
    /// cache that has no such lock file.
    #[must_use]
    pub fn file(&self) -> Option<&std::fs::File> {
        self.file.as_ref()
    }
}

/// `, held by pid 12 (`python -c ...`)`: who holds `path`, for messages ("" if unknown).
#[must_use]
pub fn held_by(path: &Path) -> String {
    crate::child::describe(&crate::child::holders(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let shared = LockedFile::try_acquire(&path, LockKind::Shared)
            .unwrap()
            .unwrap();
        let shared2 = LockedFile::try_acquire(&path, LockKind::Shared).unwrap();
        assert!(shared2.is_some());
        assert!(
            LockedFile::try_acquire(&path, LockKind::Exclusive)
                .unwrap()
                .is_none()
        );
        drop((shared, shared2));
        let exclusive = LockedFile::try_acquire(&path, LockKind::Exclusive)
            .unwrap()
            .unwrap();
        assert!(
            LockedFile::try_acquire(&path, LockKind::Shared)
                .unwrap()
                .is_none()
        );
        let mut waits = 0;
        let err = LockedFile::acquire(
            &path,
            LockKind::Shared,
            Some(Duration::from_millis(50)),
            Duration::from_millis(10),
            |_| waits += 1,
        )
        .unwrap_err();
        assert!(matches!(err, CacheError::LockTimeout { .. }));
        assert!(waits >= 1);
        drop(exclusive);
    }

    /// Two builders must never both hold a lock "exclusively": `cache prune` unlinks the lock
    /// file while holding it, a waiter that had opened the old file then gets the lock on a
    /// dead inode, and a third process creates and locks a new file at the path.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_lock_on_an_unlinked_file_is_not_held() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.lock");
        let pruner = LockedFile::try_acquire(&path, LockKind::Exclusive)
            .unwrap()
            .unwrap();
        let inode = fs_err::metadata(&path).unwrap().ino();
        let waiter_path = path.clone();
        let waiter = std::thread::spawn(move || {
            LockedFile::acquire_blocking(&waiter_path, LockKind::Exclusive).unwrap()
        });
        // Wait until the waiter has the old file open (it is then blocked in, or about to
        // enter, flock): two descriptors of this process on that inode.
        let open_on_inode = || {
            fs_err::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter(|fd| fs_err::metadata(fd.path()).is_ok_and(|m| m.ino() == inode))
                .count()
        };
        while open_on_inode() < 2 {
            std::thread::yield_now();
        }
        // Prune removes the environment and its lock file, then releases the lock.
        fs_err::remove_file(&path).unwrap();
        drop(pruner);
        let waiter = waiter.join().unwrap();
        // A third builder now comes along: the waiter's lock must exclude it.
        let third = LockedFile::try_acquire(&path, LockKind::Exclusive).unwrap();
        assert!(
            third.is_none(),
            "two processes hold the exclusive lock of `{}`",
            path.display()
        );
        drop(waiter);
        assert!(
            LockedFile::try_acquire(&path, LockKind::Exclusive)
                .unwrap()
                .is_some()
        );
    }
}
