//! Errors of `env-solve`, one variant per failure.

use miette::Diagnostic;

/// Why an environment could not be built.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum SolveError {
    /// This platform has no conda subdir.
    #[error("This platform is not supported by conda")]
    UnsupportedPlatform,

    /// Virtual package detection failed.
    #[error("Failed to detect the system's virtual packages (`__glibc`, `__cuda`, ...)")]
    #[diagnostic(help(
        "Set them explicitly with `CONDA_OVERRIDE_GLIBC`, `CONDA_OVERRIDE_CUDA`, ..."
    ))]
    VirtualPackages {
        /// The cause.
        #[source]
        source: rattler_virtual_packages::DetectVirtualPackageError,
    },
}

impl SolveError {
    /// Whether the error is caused by the input (exit code 1) rather than by something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::UnsupportedPlatform | Self::VirtualPackages { .. } => false,
        }
    }
}
