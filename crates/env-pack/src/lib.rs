//! Pack a built environment into an archive that runs wherever it is extracted, and unpack one.
//!
//! What [`pack`] guarantees about the archive it writes, and why:
//! - **One complete prefix at the archive root** (`bin/python3.X` at the top level), which is
//!   what Spark's `--archives env.tar.gz#env` and plain `tar -x` need. A venv made from an
//!   interpreter elsewhere on the build machine is refused ([`PackError::SystemVirtualenv`]): its
//!   `bin/python` is a symlink to that interpreter, which is not in the archive.
//! - **No absolute path the loader or the kernel follows.** Every ELF file's `RPATH`/`RUNPATH`
//!   entry is `$ORIGIN`-relative, or names a directory that does not exist on this machine
//!   (checked, not fixed: [`PackError::AbsoluteSearchPath`] names the file). An absolute entry
//!   into the environment, or into anything else that exists here, makes the file work here and
//!   break (or load other libraries) after extraction. An absolute entry that exists nowhere
//!   here is a leftover of the machine that built a wheel (scipy 1.17.1's `cython_special` has
//!   `/opt/_internal/cpython-3.11.13/.../scipy_openblas32/lib` and needs nothing from it): the
//!   loader skips it here and elsewhere alike, so it is reported as a warning. Symlinks are
//!   relative and stay inside the prefix; console-script shebangs that name the environment's
//!   Python become a `/bin/sh` trampoline ([`shebang`]).
//! - **Bytecode that stays valid after extraction.** `.pyc` files are compiled at pack time with
//!   `--invalidation-mode unchecked-hash`, so neither extraction mtimes nor the archive's fixed
//!   mtime make them stale; the environment's own timestamp-based `__pycache__` files are left
//!   out for that reason.
//! - **The cached environment is not modified.** Bytecode is compiled into a staging directory
//!   (`PYTHONPYCACHEPREFIX`), rewritten scripts are written from memory, and the rest is read.
//!   Cached environments are immutable and share files with the package cache by hard links.
//! - **Deterministic output**: entries sorted, every mtime the same, owner 0:0, gzip header
//!   without a timestamp.
//!
//! Text files that record the build prefix are left alone: `_sysconfigdata_*.py`,
//! `config-3.X-*/Makefile`, `bin/python3.X-config` and `*.pc` are only read when compiling C
//! extensions against this Python, and CPython finds its prefix from the executable's location,
//! not from them. No post-unpack hook could fix them anyway: Spark runs none. When the
//! destination is known ([`pack_for_destination`], an image's environment layer), they and
//! every other byte naming the prefix name the destination instead (see `relocate.rs`).
//!
//! An environment with a saved manifest (`.pyfunc-env/manifest.json`, `env_store::Manifest`)
//! is packed from it: an entry the manifest does not list (added after the build) is left out
//! with a warning, and which files name the prefix is read from it, not searched for.

#![warn(missing_docs)]

mod archive;
pub mod cached;
mod compile;
pub mod elf;
pub mod policy;
mod relocate;
mod scan;
pub mod shebang;
pub mod spark;
mod unpack;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

pub use scan::{Distribution, Environment, inspect};
pub use unpack::{
    MAX_ENTRIES, MAX_UNPACKED_BYTES, UnpackLimits, UnpackReport, unpack, unpack_interruptible,
    unpack_with,
};

/// Errors of packing and unpacking.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PackError {
    /// The cache (its root, a bucket) could not be opened.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),

    /// `pack --for` names a target other than Spark.
    #[error("Unknown `--for` target `{name}`")]
    #[diagnostic(help("The only target is Spark: `--for spark` or `--for spark=3.5.1`"))]
    UnknownTarget {
        /// The target given.
        name: String,
    },

    /// `pack --for spark=VERSION` with a version that does not start with a digit.
    #[error("Invalid Spark version `{version}` in `--for`; write e.g. `--for spark=3.5.1`")]
    SparkVersion {
        /// The version given.
        version: String,
    },

    /// An I/O error on a path.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The directory holds no Python installation.
    #[error("`{}` is not a Python environment (no `lib/python3.X/` with a `bin/python3.X`)", prefix.display())]
    #[diagnostic(help("Pack a directory that `pyfunc-env create` built"))]
    NotAnEnvironment {
        /// The directory.
        prefix: PathBuf,
    },

    /// A virtualenv whose Python lives elsewhere on this machine.
    #[error("`{}` is a virtualenv made from the interpreter in `{home}`, which the archive cannot contain", prefix.display())]
    #[diagnostic(help(
        "Rebuild the environment with a Python from a conda channel, which puts the whole interpreter in the environment: add `--python-source conda` (or use `--env-manager conda`)"
    ))]
    SystemVirtualenv {
        /// The environment.
        prefix: PathBuf,
        /// `home` from its `pyvenv.cfg`.
        home: String,
    },

    /// `bin/python3.X` resolves outside the environment.
    #[error("`{}` resolves to `{}`, outside the environment", python.display(), target.display())]
    #[diagnostic(help(
        "Only a complete prefix can be packed: rebuild with `--python-source conda` (or `--env-manager conda`)"
    ))]
    PythonOutside {
        /// The interpreter path in the environment.
        python: PathBuf,
        /// Where it resolves.
        target: PathBuf,
    },

    /// A symlink with an absolute target.
    #[error("Symlink `{path}` points to the absolute path `{}`", target.display())]
    #[diagnostic(help(
        "An absolute symlink breaks once the environment is extracted elsewhere; the package that installed it is not relocatable"
    ))]
    AbsoluteSymlink {
        /// The symlink, relative to the environment.
        path: String,
        /// Its target.
        target: PathBuf,
    },

    /// A relative symlink that leaves the environment.
    #[error("Symlink `{path}` points to `{}`, outside the environment", target.display())]
    #[diagnostic(help("The archive would contain a link to a file it does not contain"))]
    SymlinkEscapes {
        /// The symlink, relative to the environment.
        path: String,
        /// Its target.
        target: PathBuf,
    },

    /// An ELF file whose library search path is an absolute directory that exists here.
    #[error("`{path}` has the absolute library search path `{value}` ({tag})")]
    #[diagnostic(help(
        "The file finds its libraries there on this machine, but not where the archive is extracted. The package that installed it was not built relocatable; rebuild it with an `$ORIGIN`-relative RUNPATH (`patchelf --set-rpath '$ORIGIN/...'`) or use a build that has one"
    ))]
    AbsoluteSearchPath {
        /// The file, relative to the environment.
        path: String,
        /// `RPATH` or `RUNPATH`.
        tag: &'static str,
        /// The offending entry.
        value: String,
    },

    /// The environment's Python did not run.
    #[error("Failed to run `{}`", python.display())]
    #[diagnostic(help("The environment may be damaged: check it with `pyfunc-env cache verify`"))]
    PythonFailed {
        /// The interpreter.
        python: PathBuf,
        /// What it printed.
        #[source]
        source: CommandFailed,
    },

    /// The environment already has a top-level `model` entry, where `--with-model` puts the model.
    #[error("`{}` already contains `model`, where the model would go", prefix.display())]
    #[diagnostic(help("Ship the model separately instead of with `--with-model`"))]
    ModelPathTaken {
        /// The environment.
        prefix: PathBuf,
    },

    /// Writing a zip archive failed.
    #[error("Failed to write the zip archive `{}`", path.display())]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The cause.
        #[source]
        source: zip::result::ZipError,
    },

    /// Reading a zip archive failed.
    #[error("Failed to read the zip archive `{}`", path.display())]
    ZipRead {
        /// The archive.
        path: PathBuf,
        /// The cause.
        #[source]
        source: zip::result::ZipError,
    },

    /// The file is neither a gzip-compressed tar, a tar nor a zip.
    #[error("`{}` is not a `.tar.gz`, `.tar.zst`, `.tar` or `.zip` archive", path.display())]
    #[diagnostic(help("Pass an archive written by `pyfunc-env pack`"))]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },

    /// An archive entry would land outside the target directory.
    #[error("Archive entry `{entry}` of `{}` points outside the target directory", archive.display())]
    #[diagnostic(help(
        "Nothing was written for this entry. The archive was not written by `pyfunc-env pack`, or was tampered with"
    ))]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry (and its link target, if any).
        entry: String,
    },

    /// An archive entry that `unpack` does not extract (a device, a fifo, a sparse file).
    #[error("Archive entry `{entry}` of `{}` is not a directory, regular file or link", archive.display())]
    #[diagnostic(help(
        "Nothing was extracted. The archive was not written by `pyfunc-env pack`, or was tampered with"
    ))]
    UnsupportedEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry.
        entry: String,
    },

    /// The archive holds more file content than the limit (its declared size, or
    /// [`MAX_UNPACKED_BYTES`]).
    #[error("`{}` unpacks to more than {limit} bytes", archive.display())]
    #[diagnostic(help(
        "Nothing was left behind. The archive is damaged or hostile (a decompression bomb), or larger than declared"
    ))]
    TooLarge {
        /// The archive.
        archive: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },

    /// The archive holds more entries than the limit.
    #[error("`{}` holds more than {limit} entries", archive.display())]
    #[diagnostic(help(
        "Nothing was left behind. The archive was not written by `pyfunc-env pack`, or was tampered with"
    ))]
    TooManyEntries {
        /// The archive.
        archive: PathBuf,
        /// The limit.
        limit: u64,
    },

    /// Unpacking was stopped (SIGINT); what it wrote was removed.
    #[error("Unpacking into `{}` was interrupted; nothing was left there", dir.display())]
    Interrupted {
        /// The target directory.
        dir: PathBuf,
    },

    /// The target directory of `unpack` is not empty.
    #[error("`{}` exists and is not empty", dir.display())]
    #[diagnostic(help("Unpack into a new or empty directory"))]
    TargetNotEmpty {
        /// The directory.
        dir: PathBuf,
    },

    /// A blocking task of the runtime failed (it panicked: a bug).
    #[error("The {task} task failed")]
    Task {
        /// `pack` or `unpack`.
        task: &'static str,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },

    /// The unpacked environment's Python reports another prefix than where it was unpacked.
    #[error("The unpacked Python reports `sys.prefix` = `{actual}`, not `{}`", expected.display())]
    #[diagnostic(help(
        "The environment is not relocatable; pack it again with this version of pyfunc-env"
    ))]
    PrefixMismatch {
        /// Where it was unpacked.
        expected: PathBuf,
        /// What Python says.
        actual: String,
    },
}

impl PackError {
    /// Whether the input is at fault (an environment that cannot be packed, a bad archive or
    /// target) rather than something broken (I/O, a Python that does not run).
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        if let Self::Cache(source) = self {
            return source.is_user_error();
        }
        !matches!(
            self,
            Self::Io { .. }
                | Self::PythonFailed { .. }
                | Self::Zip { .. }
                | Self::ZipRead { .. }
                | Self::PrefixMismatch { .. }
                | Self::Interrupted { .. }
                | Self::Task { .. }
        )
    }
}

/// A command that exited unsuccessfully; the message is its output.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandFailed {
    /// Exit status and the tail of its stderr.
    pub message: String,
}

/// Runs `work` on the caller's Tokio runtime's blocking pool (packing and unpacking read and
/// write for seconds and run Python; the runtime's workers stay free, e.g. for `unpack`'s
/// SIGINT handler). Starts no runtime of its own.
pub(crate) async fn spawn_blocking<T: Send + 'static>(
    task: &'static str,
    work: impl FnOnce() -> Result<T, PackError> + Send + 'static,
) -> Result<T, PackError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| PackError::Task { task, source })?
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The archive formats (the CLI's `pack --format`, which offers all but `tar.zst`; the `help`
/// values are its `--help` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// A gzip-compressed tar (Spark: Hadoop's `unTar`, which shells out to `gzip` and `tar`).
    #[serde(rename = "tar.gz")]
    #[cfg_attr(
        feature = "clap",
        value(
            name = "tar.gz",
            alias = "tgz",
            help = "A gzip-compressed tar (Spark, plain `tar -xzf`)"
        )
    )]
    TarGz,
    /// An uncompressed tar.
    #[serde(rename = "tar")]
    #[cfg_attr(feature = "clap", value(help = "An uncompressed tar"))]
    Tar,
    /// A zip with unix modes; symlinks are stored as copies (Hadoop's `unZip` does not create
    /// symlinks).
    #[serde(rename = "zip")]
    #[cfg_attr(
        feature = "clap",
        value(help = "A zip with unix modes; symlinks stored as copies")
    )]
    Zip,
    /// A zstd-compressed tar, compressed on every core (the remote cache's format: about 15x
    /// faster to write than gzip at a smaller size).
    #[serde(rename = "tar.zst")]
    #[cfg_attr(feature = "clap", value(skip))]
    TarZst,
}

impl Format {
    /// The format an output file name implies (`.zip`, `.tar`, `.tar.zst`, else `.tar.gz`).
    #[must_use]
    pub fn from_path(path: &Path) -> Self {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if extension == "zip" {
            Self::Zip
        } else if extension == "zst" || extension == "tzst" {
            Self::TarZst
        } else if extension == "tar" {
            Self::Tar
        } else {
            Self::TarGz
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TarGz => "tar.gz",
            Self::Tar => "tar",
            Self::Zip => "zip",
            Self::TarZst => "tar.zst",
        })
    }
}

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The archive format.
    pub format: Format,
    /// Compile bytecode into the archive (`unchecked-hash` `.pyc` files).
    pub compile: bool,
    /// With `compile`: take the environment's own valid `.pyc` files, their recorded source
    /// mtime made `mtime`, and compile only the sources without one. Only for an archive whose
    /// mtimes are kept where it is extracted (an image layer): a timestamp-based `.pyc` is
    /// stale once its source's mtime changes.
    pub reuse_bytecode: bool,
    /// Keep `test`/`tests` directories under `lib/python3.X/`.
    pub keep_tests: bool,
    /// Distributions to leave out, by name (`pyspark`, `py4j`): their files per `RECORD` (pip)
    /// or `conda-meta` (conda).
    pub exclude_distributions: Vec<String>,
    /// A model directory to include under `model/`.
    pub model: Option<PathBuf>,
    /// Where to stage compiled bytecode (the cache's `tmp/`: same filesystem, cleaned up).
    pub staging_dir: PathBuf,
    /// The mtime of every entry (seconds since the epoch).
    pub mtime: u64,
    /// gzip and zip compression level (0–9); zstd uses its own default level (3).
    pub compression_level: u32,
    /// Keep every file of the prefix (headers, tests, IDLE/tkinter) instead of leaving out
    /// what a deployment does not need: a remote-cache entry must be the same environment as a
    /// local build, so `cache verify` finds every installed file.
    pub full_prefix: bool,
}

/// What was left out, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Excluded {
    /// Headers, static libraries, pkg-config and `CMake` files, man pages and docs.
    pub dev_files: Counted,
    /// IDLE, tkinter, turtledemo, ensurepip.
    pub gui_and_installers: Counted,
    /// `test`/`tests` directories.
    pub tests: Counted,
    /// The environment's own `__pycache__` (replaced by pack-time bytecode, or none).
    pub stale_bytecode: Counted,
    /// Distributions excluded by name.
    pub distributions: Counted,
    /// pyfunc-env's own files (`.pyfunc-env/`, `CACHEDIR.TAG`).
    pub metadata: Counted,
}

/// A count of files and bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counted {
    /// Files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Counted {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

impl Excluded {
    /// What a user is told was left out (`pack`'s `Left out:` line), in that order, with the
    /// categories that left nothing out dropped; pyfunc-env's own metadata is never mentioned.
    /// `compiled`: the archive got pack-time bytecode, which replaces the environment's.
    #[must_use]
    pub fn shown(&self, compiled: bool) -> Vec<(&'static str, Counted)> {
        [
            ("tests", self.tests),
            ("headers, static libraries, docs", self.dev_files),
            ("IDLE, tkinter, ensurepip", self.gui_and_installers),
            ("pyspark, py4j", self.distributions),
            (
                if compiled {
                    "timestamp bytecode (replaced)"
                } else {
                    "timestamp bytecode"
                },
                self.stale_bytecode,
            ),
        ]
        .into_iter()
        .filter(|(_, counted)| counted.files > 0)
        .collect()
    }

    /// [`Self::shown`] as `pack` says it after `Left out:` (`tests 1.0 MiB, timestamp bytecode
    /// 10 B`); `None` when nothing was left out. (Was joined in the CLI.)
    #[must_use]
    pub fn summary(&self, compiled: bool) -> Option<String> {
        let parts: Vec<String> = self
            .shown(compiled)
            .into_iter()
            .map(|(what, counted)| {
                format!("{what} {}", env_cache::units::human_size(counted.bytes))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[cfg(test)]
mod excluded_tests {
    use super::*;

    #[test]
    fn only_what_left_something_out_is_shown_and_metadata_never() {
        let one = Counted {
            files: 1,
            bytes: 10,
        };
        let excluded = Excluded {
            tests: one,
            stale_bytecode: one,
            metadata: one,
            ..Excluded::default()
        };
        let names = |compiled| -> Vec<_> {
            excluded
                .shown(compiled)
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        };
        assert_eq!(names(true), ["tests", "timestamp bytecode (replaced)"]);
        assert_eq!(names(false), ["tests", "timestamp bytecode"]);
        assert!(Excluded::default().shown(true).is_empty());
        assert_eq!(
            excluded.summary(true).as_deref(),
            Some("tests 10 B, timestamp bytecode (replaced) 10 B")
        );
        assert_eq!(Excluded::default().summary(false), None);
    }
}

/// Seconds spent in each step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PackTimings {
    /// Walking and checking the environment.
    pub scan: f64,
    /// Compiling bytecode.
    pub compile: f64,
    /// Writing the archive.
    pub write: f64,
    /// Everything.
    pub total: f64,
}

/// The result of [`pack`].
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    /// The archive written.
    pub output: PathBuf,
    /// Its format.
    pub format: Format,
    /// Its size in bytes.
    pub archive_bytes: u64,
    /// Bytes of file content in it (the unpacked size, roughly).
    pub unpacked_bytes: u64,
    /// Regular files in it.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symlinks (for zip: stored as copies, counted as files).
    pub symlinks: u64,
    /// `.pyc` files compiled at pack time.
    pub bytecode_files: u64,
    /// Console scripts given the relocatable trampoline.
    pub scripts_rewritten: Vec<String>,
    /// The environment's Python.
    pub python: String,
    /// Its `major.minor`.
    pub python_minor: String,
    /// What was left out.
    pub excluded: Excluded,
    /// Whether the model is included under `model/`.
    pub with_model: bool,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Step timings.
    pub timings: PackTimings,
}

impl PackReport {
    /// The `pack --json` document: the report, with the key and the prefix of the environment
    /// packed. (Was patched into the report's JSON in the CLI.)
    pub fn document(
        &self,
        key: &str,
        prefix: &Path,
    ) -> Result<serde_json::Value, serde_json::Error> {
        let mut document = serde_json::to_value(self)?;
        document["key"] = serde_json::Value::String(key.to_string());
        document["prefix"] = serde_json::Value::String(prefix.display().to_string());
        Ok(document)
    }
}

fn secs(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Packs the environment at `prefix` into `output` (written atomically: a temporary file
/// beside it, then a rename).
pub fn pack(prefix: &Path, output: &Path, options: &PackOptions) -> Result<PackReport, PackError> {
    pack_inner(prefix, output, options, None)
}

/// Packs like [`pack`] an environment that will be extracted at `destination` (an absolute
/// path, such as an image's environment directory): every file that names the path the
/// environment was built at names `destination` instead, console scripts run
/// `destination/bin/python` directly and bytecode names its sources there. The archive is then
/// the same whichever path the environment was built at (see the `relocate` module).
pub fn pack_for_destination(
    prefix: &Path,
    output: &Path,
    options: &PackOptions,
    destination: &str,
) -> Result<PackReport, PackError> {
    pack_inner(prefix, output, options, Some(destination))
}

fn pack_inner(
    prefix: &Path,
    output: &Path,
    options: &PackOptions,
    destination: Option<&str>,
) -> Result<PackReport, PackError> {
    let start = Instant::now();
    let (environment, plan, staging, scan_secs, compile_secs) =
        prepare(prefix, options, destination)?;
    let write_start = Instant::now();
    let counts = archive::write(&plan, output, options)?;
    drop(staging);
    let archive_bytes = fs_err::metadata(output).map_err(io(output))?.len();
    Ok(report(
        &environment,
        &plan,
        options,
        output,
        archive_bytes,
        &counts,
        PackTimings {
            scan: scan_secs,
            compile: compile_secs,
            write: secs(write_start),
            total: secs(start),
        },
    ))
}

/// Packs like [`pack_for_destination`] as an uncompressed tar written to `writer`, every entry
/// under `under` (`opt/pyfunc-env/env`, its parent directories first): an image's
/// environment layer, compressed and hashed as it is written, with no archive on disk. The
/// report's `output` is empty and `archive_bytes` counts file content.
pub fn pack_for_destination_to<W: std::io::Write>(
    prefix: &Path,
    writer: W,
    options: &PackOptions,
    destination: &str,
    under: &str,
) -> Result<(PackReport, W), PackError> {
    let start = Instant::now();
    let (environment, plan, staging, scan_secs, compile_secs) =
        prepare(prefix, options, Some(destination))?;
    let write_start = Instant::now();
    let (counts, writer) = archive::write_tar_under(&plan, writer, options.mtime, under)?;
    drop(staging);
    let report = report(
        &environment,
        &plan,
        options,
        Path::new(""),
        counts.bytes,
        &counts,
        PackTimings {
            scan: scan_secs,
            compile: compile_secs,
            write: secs(write_start),
            total: secs(start),
        },
    );
    Ok((report, writer))
}

type Prepared = (Environment, scan::Plan, Option<tempfile::TempDir>, f64, f64);

/// Scans the environment and makes its bytecode: the plan of every entry, and the staging
/// directory its compiled `.pyc` files are read from (held until the archive is written).
fn prepare(
    prefix: &Path,
    options: &PackOptions,
    destination: Option<&str>,
) -> Result<Prepared, PackError> {
    let start = Instant::now();
    let environment = inspect(prefix)?;
    let manifest = scan::saved_manifest(&environment);
    let relocation = destination.map(|to| {
        relocate::Relocation::new(
            &environment.root,
            &environment.canonical,
            manifest.as_ref().map(env_store::Manifest::binary_prefix),
            to,
        )
    });
    let mut plan = scan::plan(
        &environment,
        options,
        manifest.as_ref(),
        relocation.as_ref(),
    )?;
    let scan_secs = secs(start);

    let compile_start = Instant::now();
    let staging = if options.compile && options.reuse_bytecode {
        Some(compile::reuse(
            &environment,
            options,
            relocation.as_ref(),
            &mut plan,
        )?)
    } else if options.compile {
        let staging = compile::compile(&environment, options, relocation.as_ref(), &plan)?;
        plan.add_bytecode(&environment, staging.path())?;
        Some(staging)
    } else {
        None
    };
    let compile_secs = if options.compile {
        secs(compile_start)
    } else {
        0.0
    };
    if let Some(model) = &options.model {
        plan.add_model(&environment, model)?;
    }
    plan.finish();
    Ok((environment, plan, staging, scan_secs, compile_secs))
}

fn report(
    environment: &Environment,
    plan: &scan::Plan,
    options: &PackOptions,
    output: &Path,
    archive_bytes: u64,
    counts: &archive::Counts,
    timings: PackTimings,
) -> PackReport {
    PackReport {
        output: output.to_path_buf(),
        format: options.format,
        archive_bytes,
        unpacked_bytes: counts.bytes,
        files: counts.files,
        directories: counts.directories,
        symlinks: counts.symlinks,
        bytecode_files: plan.bytecode_files,
        scripts_rewritten: plan.scripts_rewritten.clone(),
        python: environment.python_version.clone(),
        python_minor: environment.python_minor.clone(),
        excluded: plan.excluded.clone(),
        with_model: options.model.is_some(),
        warnings: plan.warnings.clone(),
        timings,
    }
}
