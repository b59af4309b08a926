//! Every environment variable pyfunc-env reads, in one place.

/// Environment variable names.
pub struct EnvVars;

impl EnvVars {
    /// Path to the cache directory.
    pub const PYFUNC_ENV_CACHE_DIR: &'static str = "PYFUNC_ENV_CACHE_DIR";
    /// Never access the network (`1`, `true`).
    pub const PYFUNC_ENV_OFFLINE: &'static str = "PYFUNC_ENV_OFFLINE";
    /// Hide progress bars.
    pub const PYFUNC_ENV_NO_PROGRESS: &'static str = "PYFUNC_ENV_NO_PROGRESS";
    /// Path to the configuration file.
    pub const PYFUNC_ENV_CONFIG_FILE: &'static str = "PYFUNC_ENV_CONFIG_FILE";
    /// Path to the `uv` binary to use.
    pub const PYFUNC_ENV_UV: &'static str = "PYFUNC_ENV_UV";
    /// uv's cache directory, instead of `uv-v1/` inside the cache (e.g. to share one uv cache
    /// between several cache roots).
    pub const PYFUNC_ENV_UV_CACHE_DIR: &'static str = "PYFUNC_ENV_UV_CACHE_DIR";
    /// Channel mirrors, `name-or-url=url` pairs separated by whitespace or commas.
    pub const PYFUNC_ENV_MIRRORS: &'static str = "PYFUNC_ENV_MIRRORS";
    /// Seconds to wait for a lock held by another process.
    pub const PYFUNC_ENV_LOCK_TIMEOUT: &'static str = "PYFUNC_ENV_LOCK_TIMEOUT";
    /// A shared cache of built environments: `s3://bucket/prefix`, `gs://...`, `az://...` or
    /// `file:///shared/dir`.
    pub const PYFUNC_ENV_REMOTE_CACHE: &'static str = "PYFUNC_ENV_REMOTE_CACHE";
    /// `1`: pull from the remote cache, never push to it.
    pub const PYFUNC_ENV_REMOTE_CACHE_READ_ONLY: &'static str = "PYFUNC_ENV_REMOTE_CACHE_READ_ONLY";
    /// Seconds each remote-cache request (and each stalled transfer) may take (default 15).
    pub const PYFUNC_ENV_REMOTE_CACHE_TIMEOUT: &'static str = "PYFUNC_ENV_REMOTE_CACHE_TIMEOUT";
    /// `run`: compile bytecode before the model starts on a cache miss (`1`), not in the
    /// background.
    pub const PYFUNC_ENV_COMPILE_FOREGROUND: &'static str = "PYFUNC_ENV_COMPILE_FOREGROUND";
    /// Disable colours (<https://no-color.org>).
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// Force colours even when stderr is not a terminal.
    pub const FORCE_COLOR: &'static str = "FORCE_COLOR";
    /// Tracing filter, overrides `-v`.
    pub const RUST_LOG: &'static str = "RUST_LOG";
    /// Base of the default cache directory.
    pub const XDG_CACHE_HOME: &'static str = "XDG_CACHE_HOME";
    /// Base of the default configuration file.
    pub const XDG_CONFIG_HOME: &'static str = "XDG_CONFIG_HOME";
    /// The user's home directory.
    pub const HOME: &'static str = "HOME";
    /// The mtime `pack` gives every archive entry (seconds since the epoch), as in
    /// <https://reproducible-builds.org/specs/source-date-epoch/>.
    pub const SOURCE_DATE_EPOCH: &'static str = "SOURCE_DATE_EPOCH";
    /// The Spark driver's Python, which `pack --for spark` compares with the archive's.
    pub const PYSPARK_DRIVER_PYTHON: &'static str = "PYSPARK_DRIVER_PYTHON";
}
