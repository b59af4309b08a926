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
    file: std::fs::File,
    path: PathBuf,
}

fn open(path: &Path) -> Result<std::fs::File, CacheError> {
    fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(fs_err::File::into_parts)
        .map(|(file, _)| file)
        .map_err(|e| CacheError::Io {
            path: path.to_path_buf(),
            source: e,
        })
}

impl LockedFile {
    /// Opens (creating if needed) and locks `path`, waiting as long as it takes.
    pub fn acquire_blocking(path: &Path, kind: LockKind) -> Result<Self, CacheError> {
        let file = open(path)?;
        let result = match kind {
            LockKind::Shared => file.lock_shared(),
            LockKind::Exclusive => file.lock(),
        };
        result.map_err(crate::io(path))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Tries to lock `path` without waiting; `Ok(None)` if another process holds it.
    pub fn try_acquire(path: &Path, kind: LockKind) -> Result<Option<Self>, CacheError> {
        let file = open(path)?;
        let result = match kind {
            LockKind::Shared => file.try_lock_shared(),
            LockKind::Exclusive => file.try_lock(),
        };
        match result {
            Ok(()) => Ok(Some(Self {
                file,
                path: path.to_path_buf(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(CacheError::Io {
                path: path.to_path_buf(),
                source,
            }),
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

    /// The open file (e.g. to pass the lock on to a child process).
    #[must_use]
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
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
}
