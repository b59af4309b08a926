//! What a failed uv run's stderr says: the one place that reads uv's words.
//!
//! uv reports every failure as text on stderr with the same exit code (1, or 2 for a usage
//! error), so which hint fits (the model's files, the network, `--offline`, a full disk) can
//! only be read from that text. Every phrase we rely on is here, next to the uv output it was
//! taken from (uv 0.13.9), and `tests` hold those outputs: when a uv upgrade rewords one, a test
//! here fails rather than a user getting the wrong hint. Nothing else in the workspace may
//! inspect uv's stderr.

/// Why uv failed, as far as its stderr tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UvFailure {
    /// The disk holding the cache or the prefix is full (`No space left on device (os error 28)`).
    DiskFull,
    /// `--offline`, and uv's cache lacks a package (`... was not found in the cache ...`, `hint:
    /// Packages were unavailable because the network was disabled`).
    OfflineCacheMiss,
    /// The requirements cannot be resolved or a file is not what the model asks for: the
    /// model's files are to blame (`No solution found when resolving dependencies`, `Hash
    /// mismatch`, ...).
    Resolution,
    /// Anything else (the index unreachable, a build failure): not the model's fault as far as
    /// we can tell.
    Other,
}

impl UvFailure {
    /// Classifies `stderr` (already redacted) of a uv run made with or without `--offline`.
    pub(crate) fn of(stderr: &str, offline: bool) -> Self {
        if stderr.contains("No space left on device") || stderr.contains("os error 28") {
            Self::DiskFull
        } else if offline
            && (stderr.contains("network was disabled")
                || stderr.contains("not found in the cache"))
        {
            Self::OfflineCacheMiss
        } else if RESOLUTION.iter().any(|needle| stderr.contains(needle)) {
            Self::Resolution
        } else {
            Self::Other
        }
    }
}

/// uv's phrases for a failure the model's requirements cause.
const RESOLUTION: &[&str] = &[
    "No solution found",
    "not found in the package registry",
    "we can conclude",
    "has no version",
    "is not available",
    "Failed to parse",
    "Distribution not found",
    "does not match",
    "Hash mismatch",
];

/// Whether uv failed building the distribution `name` (``error: Failed to build `NAME @
/// file:///...` ``, or ``Failed to build `NAME==1.0` `` from an index): for a `uv.lock` model,
/// its own project, whose source MLflow does not log. The whole name: `own` is not `ownproj`.
pub(crate) fn failed_to_build(stderr: &str, name: &str) -> bool {
    let needle = format!("Failed to build `{name}");
    stderr.match_indices(&needle).any(|(at, _)| {
        stderr[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|next| matches!(next, ' ' | '=' | '`'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // What uv 0.13.9 printed (`uv pip install --python v/bin/python ...`).
    const NO_SOLUTION: &str = "Using Python 3.11.7 environment at: v\nerror: No solution found when resolving dependencies\n  cause: Because there is no version of numpy==0.0.1 and you require numpy==0.0.1, we can conclude that your requirements are unsatisfiable.\n";
    const NOT_IN_REGISTRY: &str = "Using Python 3.11.7 environment at: v\nerror: No solution found when resolving dependencies\n  cause: Because this-package-does-not-exist-xq was not found in the package registry and you require this-package-does-not-exist-xq==1, we can conclude that your requirements are unsatisfiable.\n";
    const OFFLINE_MISS: &str = "Using Python 3.11.7 environment at: v\nerror: No solution found when resolving dependencies\n  cause: Because requests was not found in the cache and you require requests, we can conclude that your requirements are unsatisfiable.\n\nhint: Packages were unavailable because the network was disabled. When the network is disabled, registry packages may only be read from the cache.\n";
    const BUILD_FAILED: &str = "Using Python 3.11.7 environment at: v\nResolved 1 package in 8ms\n   Building ownproj @ file:///tmp/uvs/proj\nerror: Failed to build `ownproj @ file:///tmp/uvs/proj`\n  cause: The build backend returned an error\n  cause: Call to `setuptools.build_meta.get_requires_for_build_wheel` failed (exit status: 1)\n\n         [stderr]\n         boom\n\nhint: Build failures usually indicate a problem with the package or the build environment\n";
    const DISK_FULL: &str = "error: Failed to install: numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl (numpy==2.4.6)\n  cause: failed to write to file `/cache/envs-v1/x/lib/python3.11/site-packages/numpy/core/_multiarray_umath.so`: No space left on device (os error 28)\n";
    const UNREACHABLE: &str = "error: Request failed after 3 retries\n  cause: Failed to fetch: `https://pypi.org/simple/numpy/`\n  cause: error sending request for url (https://pypi.org/simple/numpy/)\n  cause: client error (Connect)\n  cause: tcp connect error: Connection refused (os error 111)\n";

    #[test]
    fn each_uv_message_gets_its_cause() {
        assert_eq!(UvFailure::of(NO_SOLUTION, false), UvFailure::Resolution);
        assert_eq!(UvFailure::of(NOT_IN_REGISTRY, false), UvFailure::Resolution);
        assert_eq!(
            UvFailure::of(OFFLINE_MISS, true),
            UvFailure::OfflineCacheMiss
        );
        // Online, "not found in the cache" cannot happen; were it printed, the resolution is
        // what failed.
        assert_eq!(UvFailure::of(OFFLINE_MISS, false), UvFailure::Resolution);
        assert_eq!(UvFailure::of(DISK_FULL, false), UvFailure::DiskFull);
        assert_eq!(UvFailure::of(DISK_FULL, true), UvFailure::DiskFull);
        assert_eq!(UvFailure::of(UNREACHABLE, false), UvFailure::Other);
        assert_eq!(UvFailure::of(BUILD_FAILED, false), UvFailure::Other);
    }

    #[test]
    fn a_build_failure_names_its_distribution() {
        assert!(failed_to_build(BUILD_FAILED, "ownproj"));
        assert!(!failed_to_build(BUILD_FAILED, "own"));
        assert!(!failed_to_build(NO_SOLUTION, "numpy"));
        assert!(failed_to_build(
            "error: Failed to build `pinpkg==1.0`\n  cause: The build backend returned an error\n",
            "pinpkg"
        ));
    }
}
