//! What besides the spec decides the environment: platform, virtual packages, build options.
//! These go into the key ([`env_spec::KeyContext`]) together with the spec.

use rattler_conda_types::{GenericVirtualPackage, Subdir};
use rattler_virtual_packages::{Override, VirtualPackageOverrides, VirtualPackages};

use crate::error::SolveError;

/// Where a virtualenv-mode environment's Python comes from (the CLI's `--python-source`; the
/// `help` values are its `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PythonSource {
    /// Try what works offline first: a cached conda package, an interpreter on this machine,
    /// then a conda channel.
    #[default]
    #[cfg_attr(
        feature = "clap",
        value(help = "A conda channel first, then this machine")
    )]
    Auto,
    /// `python=X.Y.Z` from a conda channel, installed into the environment with rattler.
    #[cfg_attr(feature = "clap", value(help = "`python=X.Y.Z` from a conda channel"))]
    Conda,
    /// An interpreter found on this machine (PATH, pyenv, uv-managed), copied by `uv venv`.
    #[cfg_attr(feature = "clap", value(help = "An interpreter on this machine"))]
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

/// [`detect_virtual_packages`], remembering the CUDA detection in the cache's tools bucket
/// `tools`: every `run` computes the key, and the key holds `__cuda`.
///
/// - On a GPU machine, rattler's own record (`cuda-info-v1.json`, valid for the boot session,
///   the driver and the GPUs seen) saves initialising NVML.
/// - On a machine without an NVIDIA driver rattler records nothing, and its probe tries to load
///   NVML and libcuda from eight paths each, then runs `nvidia-smi` (a process start, a failed
///   `execve` per `PATH` entry: about 4 ms of every cached `run` under `strace`, issue 25). The
///   absence is remembered in [`NO_CUDA_MEMO`] instead, see [`NoCuda`].
pub fn detect_virtual_packages_in(
    tools: Option<&std::path::Path>,
) -> Result<Vec<GenericVirtualPackage>, SolveError> {
    let memo = tools.map(|dir| dir.join(NO_CUDA_MEMO));
    let host = NoCuda::current();
    let remembered = match (&memo, &host) {
        (Some(memo), Some(host)) => host.is_remembered_in(memo),
        _ => false,
    };
    let mut overrides = VirtualPackageOverrides::from_env();
    if remembered {
        tracing::debug!("No NVIDIA driver (remembered for this boot in `{NO_CUDA_MEMO}`)");
        // An empty override is rattler's "absent" (`CONDA_OVERRIDE_CUDA=`).
        overrides.cuda = Some(Override::String(String::new()));
        overrides.cuda_arch = Some(Override::String(String::new()));
    }
    let packages = VirtualPackages::detect(&overrides, tools.filter(|dir| dir.is_dir()))
        .map_err(|source| SolveError::VirtualPackages { source })?;
    if !remembered
        && packages.cuda.is_none()
        && let (Some(memo), Some(host)) = (&memo, &host)
    {
        host.remember(memo);
    }
    Ok(packages.into_generic_virtual_packages().collect())
}

/// The file in the cache's tools bucket that remembers that this machine has no NVIDIA driver
/// ([`NoCuda`]).
pub const NO_CUDA_MEMO: &str = "no-cuda-v1.json";

/// What has to stay the same for "rattler found no CUDA driver here" to still hold: the boot
/// (a driver installed since means a reboot or a loaded module, below), the places the probe
/// searches (`PATH` for `nvidia-smi`, `LD_LIBRARY_PATH` and the loader cache for the
/// libraries), and no trace of a driver at all: no `nvidia` kernel module, no `/dev/nvidiactl`,
/// no WSL GPU, none of the library paths rattler tries. With any of those present nothing is
/// remembered and rattler decides every time (and keeps its own record when it finds CUDA).
/// `CONDA_OVERRIDE_CUDA` set: rattler probes nothing, so nothing is remembered either.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoCuda {
    boot_id: String,
    path: Option<String>,
    ld_library_path: Option<String>,
    loader_cache_modified_ns: Option<i128>,
}

/// Where an NVIDIA driver leaves a trace on Linux: the kernel module, its device and proc
/// entries, WSL's GPU libraries, and the absolute library paths rattler's probe tries
/// (`rattler_virtual_packages` 8.1.5, `cuda.rs`).
const NVIDIA_TRACES: &[&str] = &[
    "/sys/module/nvidia",
    "/proc/driver/nvidia",
    "/dev/nvidiactl",
    "/dev/nvidia0",
    "/dev/dxg",
    "/usr/lib/wsl/lib",
    "/usr/lib64/nvidia",
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so",
    "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
    "/usr/lib/x86_64-linux-gnu/libcuda.so",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
    "/usr/lib/aarch64-linux-gnu/libcuda.so.1",
];

impl NoCuda {
    /// This host's evidence, or `None` when absence cannot be remembered: not Linux, a CUDA
    /// override set, no boot id, or a trace of an NVIDIA driver.
    #[must_use]
    pub fn current() -> Option<Self> {
        if !cfg!(target_os = "linux")
            || std::env::var_os("CONDA_OVERRIDE_CUDA").is_some()
            || std::env::var_os("CONDA_OVERRIDE_CUDA_ARCH").is_some()
        {
            return None;
        }
        let boot_id = fs_err::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        if NVIDIA_TRACES
            .iter()
            .any(|trace| std::path::Path::new(trace).symlink_metadata().is_ok())
        {
            return None;
        }
        let text =
            |name: &str| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned());
        Some(Self {
            boot_id: boot_id.trim().to_string(),
            path: text("PATH"),
            ld_library_path: text("LD_LIBRARY_PATH"),
            loader_cache_modified_ns: modified_ns(std::path::Path::new("/etc/ld.so.cache")),
        })
    }

    /// Whether `memo` records exactly this evidence.
    #[must_use]
    pub fn is_remembered_in(&self, memo: &std::path::Path) -> bool {
        fs_err::read(memo)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Self>(&bytes).ok())
            .is_some_and(|remembered| &remembered == self)
    }

    /// Records this evidence in `memo`: best effort, a failure only means probing again.
    pub fn remember(&self, memo: &std::path::Path) {
        if let Some(dir) = memo.parent()
            && fs_err::create_dir_all(dir).is_ok()
            && let Ok(bytes) = serde_json::to_vec_pretty(self)
            && let Err(error) = env_cache::write_atomic(memo, &bytes)
        {
            tracing::debug!("Could not remember that there is no NVIDIA driver: {error}");
        }
    }
}

fn modified_ns(path: &std::path::Path) -> Option<i128> {
    let modified = path.metadata().ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(i128::try_from(since.as_nanos()).unwrap_or(i128::MAX))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo holds only while everything the probe depends on is unchanged: another boot,
    /// another `PATH` (another `nvidia-smi`) or another library path means probing again.
    #[test]
    fn no_cuda_memo_holds_only_for_the_same_boot_and_search_paths() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("tools-v1").join(NO_CUDA_MEMO);
        let host = NoCuda {
            boot_id: "boot-a".to_string(),
            path: Some("/usr/bin:/bin".to_string()),
            ld_library_path: None,
            loader_cache_modified_ns: Some(1),
        };
        assert!(!host.is_remembered_in(&memo), "nothing remembered yet");
        host.remember(&memo);
        assert!(host.is_remembered_in(&memo));
        let changed = [
            NoCuda {
                boot_id: "boot-b".to_string(),
                ..host.clone()
            },
            NoCuda {
                path: Some("/opt/nvidia/bin:/usr/bin:/bin".to_string()),
                ..host.clone()
            },
            NoCuda {
                ld_library_path: Some("/opt/cuda/lib64".to_string()),
                ..host.clone()
            },
            NoCuda {
                loader_cache_modified_ns: Some(2),
                ..host.clone()
            },
        ];
        for other in changed {
            assert!(!other.is_remembered_in(&memo), "{other:?}");
        }
        fs_err::write(&memo, "not json").unwrap();
        assert!(!host.is_remembered_in(&memo), "a damaged memo is ignored");
    }

    /// A remembered absence gives the same virtual packages as rattler's probe on this machine
    /// (so the same key), when the machine has no NVIDIA driver.
    #[test]
    fn remembered_absence_gives_the_probed_virtual_packages() {
        if NoCuda::current().is_none() {
            // An NVIDIA driver (or a CUDA override) here: nothing is remembered by design.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tools = dir.path().join("tools-v1");
        let probed = detect_virtual_packages_in(Some(&tools)).unwrap();
        assert!(
            tools.join(NO_CUDA_MEMO).is_file(),
            "the absence is remembered"
        );
        let remembered = detect_virtual_packages_in(Some(&tools)).unwrap();
        assert_eq!(
            key_virtual_packages(&probed),
            key_virtual_packages(&remembered)
        );
        assert_eq!(probed, remembered);
    }
}
