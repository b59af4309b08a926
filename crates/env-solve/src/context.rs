//! What besides the spec decides the environment: platform, virtual packages, build options.
//! These go into the key ([`env_spec::KeyContext`]) together with the spec.

use rattler_conda_types::{GenericVirtualPackage, Subdir};
use rattler_virtual_packages::{VirtualPackageOverrides, VirtualPackages};

use crate::error::SolveError;

/// Where a virtualenv-mode environment's Python comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PythonSource {
    /// Try what works offline first: a cached conda package, an interpreter on this machine,
    /// then a conda channel.
    #[default]
    Auto,
    /// `python=X.Y.Z` from a conda channel, installed into the environment with rattler.
    Conda,
    /// An interpreter found on this machine (PATH, pyenv, uv-managed), copied by `uv venv`.
    System,
}

impl PythonSource {
    /// The name used in keys and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Conda => "conda",
            Self::System => "system",
        }
    }
}

/// Options that change what an environment contains, so they are part of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Compile `.pyc` files into the environment.
    pub compile_bytecode: bool,
    /// Only packages published before this date (RFC 3339 or `YYYY-MM-DD`).
    pub exclude_newer: Option<String>,
    /// Where the Python of a virtualenv-mode environment comes from.
    pub python_source: PythonSource,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            compile_bytecode: true,
            exclude_newer: None,
            python_source: PythonSource::Auto,
        }
    }
}

/// Version of the environment layout: bump on any change to how environments are built.
pub const LAYOUT_VERSION: u32 = 1;

/// The platform this binary runs on.
pub fn current_platform() -> Result<Subdir, SolveError> {
    Subdir::current().ok_or(SolveError::UnsupportedPlatform)
}

/// Detects virtual packages, honouring the usual `CONDA_OVERRIDE_*` variables.
pub fn detect_virtual_packages() -> Result<Vec<GenericVirtualPackage>, SolveError> {
    detect_virtual_packages_in(None)
}

/// [`detect_virtual_packages`], with rattler's on-disk record of the CUDA detection in
/// `cache_dir` (`cuda-info-v1.json`, valid for the boot session, the driver and the GPUs
/// seen): initialising NVML on a GPU machine is the slow part of detection, and every `run`
/// computes the key.
pub fn detect_virtual_packages_in(
    cache_dir: Option<&std::path::Path>,
) -> Result<Vec<GenericVirtualPackage>, SolveError> {
    let packages = VirtualPackages::detect(&VirtualPackageOverrides::from_env(), cache_dir)
        .map_err(|source| SolveError::VirtualPackages { source })?;
    Ok(packages.into_generic_virtual_packages().collect())
}

/// The virtual packages that go into the key: those that decide whether a build runs here
/// (`__glibc`, `__cuda`, `__osx`), not the kernel version or CPU microarchitecture, which vary
/// across otherwise identical machines sharing one cache.
#[must_use]
pub fn key_virtual_packages(packages: &[GenericVirtualPackage]) -> Vec<String> {
    let mut keyed: Vec<String> = packages
        .iter()
        .filter(|p| {
            matches!(
                p.name.as_normalized(),
                "__glibc" | "__cuda" | "__osx" | "__win"
            )
        })
        .map(|p| format!("{}={}", p.name.as_normalized(), p.version))
        .collect();
    keyed.sort();
    keyed
}

/// The key context for this machine and these options; `uv` is the version of the uv that
/// installs the pip packages, if any are installed.
pub fn key_context(
    manager: env_spec::EnvManager,
    options: &BuildOptions,
    virtual_packages: &[GenericVirtualPackage],
    uv: Option<String>,
) -> Result<env_spec::KeyContext, SolveError> {
    let platform = current_platform()?;
    Ok(env_spec::KeyContext {
        platform: platform.to_string(),
        virtual_packages: key_virtual_packages(virtual_packages),
        python_source: manager
            .is_venv()
            .then(|| options.python_source.as_str().to_string()),
        exclude_newer: options.exclude_newer.clone(),
        uv,
        compile_bytecode: options.compile_bytecode,
        layout: LAYOUT_VERSION,
    })
}
