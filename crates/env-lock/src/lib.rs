//! Lock files: exactly what an environment holds, in `rattler_lock`'s pixi lock format, so other
//! tools read them too; and environments rebuilt from one with no solve and every hash checked.
//!
//! A lock records, for the current platform: every conda record installed (URL, sha256, md5,
//! size, depends, ...) and every Python distribution installed by uv (exact version, the wheel's
//! URL and sha256, found with `uv pip compile --format pylock.toml --no-deps` against the
//! environment's own interpreter, so it is the file uv would pick here). The first line is a
//! YAML comment with the key of the spec it was made from; `create --locked` refuses a lock
//! whose key differs (the model's files changed since it was written). User information in URLs
//! is never written: mirrors with credentials apply again at install time.
//!
//! The crate holds the format and nothing that decides when to lock: env-build (the
//! orchestrator) writes a lock after a build, reads one for `create --locked`, and installs
//! from it (conda records through env-conda, the files [`fetch_files`] fetched through
//! env-uv). It depends on rattler's types and lock format (`rattler_conda_types`,
//! `rattler_lock`), not on its solver or installer, and on env-uv only for
//! [`Uv::command`] (`uv pip compile` names the installed wheels' files).
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rattler_conda_types::{PrefixRecord, RepoDataRecord};
use rattler_lock::{
    DEFAULT_ENVIRONMENT_NAME, LockFile, PackageHashes, PlatformData, PypiDistributionData,
    PypiPackageData, UrlOrPath, Verbatim,
};

mod error;

use env_spec::redact::redact;
use env_uv::Uv;
pub use error::{Cause, LockError};

/// The platform this binary runs on (the lock records this platform only).
fn current_platform() -> Result<rattler_conda_types::Subdir, LockError> {
    rattler_conda_types::Subdir::current().ok_or(LockError::UnsupportedPlatform)
}

/// The header line's prefix.
const HEADER: &str = "# pyfunc-env lock:";

/// What a lock file says.
#[derive(Debug, Clone)]
pub struct LockedEnv {
    /// The key of the spec the lock was made from.
    pub key: String,
    /// The env manager.
    pub env_manager: String,
    /// Conda records for this platform, in lock order.
    pub conda: Vec<RepoDataRecord>,
    /// Python distributions: name, version, URL, sha256 (hex).
    pub pypi: Vec<LockedDistribution>,
    /// The lock file's text (for the locked environment's key).
    pub text: String,
}

/// One locked Python distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedDistribution {
    /// Name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Where the file is.
    pub url: String,
    /// Its sha256 (hex).
    pub sha256: Option<String>,
}

fn strip_userinfo(url: &mut url::Url) {
    let _ = url.set_username("");
    let _ = url.set_password(None);
}

fn lock_error(message: impl Into<String>) -> LockError {
    LockError::Lock {
        message: message.into(),
        source: None,
    }
}

/// `map_err` adapter: `message`, caused by the error.
fn lock_failed<E: Into<Cause>>(message: impl Into<String>) -> impl FnOnce(E) -> LockError {
    let message = message.into();
    move |source| LockError::Lock {
        message,
        source: Some(source.into()),
    }
}

/// The Python distributions uv installed into `prefix` (INSTALLER `uv`), as requirement lines
/// for `uv pip compile`: `name==version` for those from an index, `name @ URL` for those
/// installed from a direct URL or a local file (their `direct_url.json`), which no index has.
fn uv_installed(prefix: &Path) -> Result<Vec<String>, LockError> {
    let Some(site_packages) = env_prefix::site_packages(prefix) else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for dist in env_prefix::distributions(&site_packages) {
        if dist.installer != "uv" {
            continue;
        }
        let (name, version) = (dist.name.as_str(), dist.version.as_str());
        match direct_url(&site_packages, name, version) {
            Some(direct) if direct.get("dir_info").is_some() => {
                return Err(LockError::LockLocalDirectory {
                    name: name.to_string(),
                    source_dir: direct["url"].as_str().unwrap_or_default().to_string(),
                });
            }
            Some(direct) if direct["url"].is_string() => {
                let url = direct["url"].as_str().unwrap_or_default();
                env_spec::redact::register_url(url);
                lines.push(format!("{name} @ {url}"));
            }
            _ => lines.push(format!("{name}=={version}")),
        }
    }
    Ok(lines)
}

/// The `direct_url.json` (PEP 610) of an installed distribution, if it has one.
fn direct_url(site_packages: &Path, name: &str, version: &str) -> Option<serde_json::Value> {
    let normalized = name.replace(['-', '.'], "_").to_lowercase();
    let read = fs_err::read_dir(site_packages).ok()?;
    for entry in read.flatten() {
        let dir = entry.file_name().to_string_lossy().to_lowercase();
        if dir == format!("{normalized}-{version}.dist-info").to_lowercase() {
            let text = fs_err::read_to_string(entry.path().join("direct_url.json")).ok()?;
            return serde_json::from_str(&text).ok();
        }
    }
    None
}

/// Writes the lock of the environment at `prefix`.
#[expect(
    clippy::too_many_arguments,
    reason = "the lock needs the environment, its spec key and uv's settings"
)]
pub fn lock_environment(
    prefix: &Path,
    key: &str,
    env_manager: &str,
    channels: &[String],
    uv: &Uv,
    index_args: &env_uv::IndexArgs,
    uv_cache: &Path,
    scratch: &Path,
    offline: bool,
) -> Result<String, LockError> {
    let platform = current_platform()?;
    let records = PrefixRecord::collect_from_prefix::<PrefixRecord>(prefix).map_err(|source| {
        LockError::Io {
            path: prefix.join("conda-meta"),
            source,
        }
    })?;
    let mut builder = LockFile::builder()
        .with_platforms(vec![PlatformData {
            name: (&platform).into(),
            subdir: platform,
            virtual_packages: Vec::new(),
        }])
        .map_err(lock_failed("cannot record the platform"))?
        .with_channels(
            DEFAULT_ENVIRONMENT_NAME,
            channels.iter().map(|c| env_spec::redact::mask_userinfo(c)),
        );
    let mut conda: Vec<RepoDataRecord> = records.into_iter().map(|r| r.repodata_record).collect();
    conda.sort_by(|a, b| {
        a.package_record
            .name
            .as_normalized()
            .cmp(b.package_record.name.as_normalized())
    });
    for mut record in conda {
        strip_userinfo(&mut record.url);
        builder
            .add_conda_package(DEFAULT_ENVIRONMENT_NAME, platform.as_str(), record.into())
            .map_err(lock_failed("cannot record a conda package"))?;
    }

    let installed = uv_installed(prefix)?;
    if !installed.is_empty() {
        let mut pins = String::new();
        for line in &installed {
            pins.push_str(line);
            pins.push('\n');
        }
        let pins_file = scratch.join(format!("lock-pins-{}.txt", std::process::id()));
        fs_err::write(&pins_file, pins).map_err(|e| LockError::Io {
            path: pins_file.clone(),
            source: e,
        })?;
        // The same isolation as every other uv call (no config files, no stray `UV_*`).
        let mut command = uv.command(uv_cache, offline);
        command
            .args([
                "pip",
                "compile",
                "--no-deps",
                "--no-header",
                "--format",
                "pylock.toml",
                "--python",
            ])
            .arg(env_prefix::python_of(prefix))
            .arg(&pins_file);
        index_args.apply(&mut command);
        let output = env_cache::child::output(&mut command).map_err(|source| LockError::Io {
            path: uv.path.clone(),
            source,
        })?;
        let _ = fs_err::remove_file(&pins_file);
        if !output.status.success() {
            return Err(LockError::LockFiles {
                code: output.status.code(),
                stderr: redact(String::from_utf8_lossy(&output.stderr).trim_end()),
            });
        }
        let pylock: toml::Value = toml::from_str(&String::from_utf8_lossy(&output.stdout))
            .map_err(lock_failed("uv's pylock.toml does not parse"))?;
        for package in pylock
            .get("packages")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = package
                .get("name")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            let version = package
                .get("version")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            let file = package
                .get("wheels")
                .and_then(toml::Value::as_array)
                .and_then(|w| w.first())
                .or_else(|| package.get("sdist"))
                .or_else(|| package.get("archive"))
                .ok_or_else(|| lock_error(format!("uv found no file for `{name}=={version}`")))?;
            let url = file
                .get("url")
                .and_then(toml::Value::as_str)
                .or_else(|| file.get("path").and_then(toml::Value::as_str))
                .ok_or_else(|| lock_error(format!("no URL for `{name}=={version}`")))?;
            let mut url = url::Url::parse(url)
                .or_else(|_| {
                    url::Url::from_file_path(url)
                        .map_err(|()| url::ParseError::RelativeUrlWithoutBase)
                })
                .map_err(lock_failed(format!("`{name}` has an invalid URL")))?;
            strip_userinfo(&mut url);
            let sha256 = file
                .get("hashes")
                .and_then(|h| h.get("sha256"))
                .and_then(toml::Value::as_str)
                .and_then(rattler_digest::parse_digest_from_hex::<rattler_digest::Sha256>)
                .or_else(|| {
                    // uv gives no hash for a local file: hash it ourselves.
                    let path = url.to_file_path().ok()?;
                    let bytes = fs_err::read(path).ok()?;
                    rattler_digest::parse_digest_from_hex::<rattler_digest::Sha256>(
                        &env_spec::spec::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                    )
                });
            let data = PypiDistributionData {
                name: pep508_rs::PackageName::from_str(name)
                    .map_err(lock_failed(format!("invalid package name `{name}`")))?,
                version: pep440_rs::Version::from_str(version).map_err(lock_failed(format!(
                    "invalid version `{version}` of `{name}`"
                )))?,
                location: Verbatim::new(UrlOrPath::Url(url)),
                index_url: None,
                hash: sha256.map(PackageHashes::Sha256),
                requires_dist: Vec::new(),
                requires_python: None,
            };
            builder
                .add_pypi_package(
                    DEFAULT_ENVIRONMENT_NAME,
                    platform.as_str(),
                    PypiPackageData::Distribution(Box::new(data)),
                )
                .map_err(lock_failed(format!("cannot record `{name}`")))?;
        }
    }
    let text = builder
        .finish()
        .render_to_string()
        .map_err(lock_failed("cannot render it"))?;
    Ok(format!(
        "{HEADER} key={key} env-manager={env_manager}\n{text}"
    ))
}

/// Reads a lock file written by [`lock_environment`].
pub fn read_lock(path: &Path) -> Result<LockedEnv, LockError> {
    let text = fs_err::read_to_string(path).map_err(|e| LockError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let header = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(HEADER))
        .ok_or_else(|| LockError::LockInvalid {
            path: path.to_path_buf(),
            message: "it was not written by `pyfunc-env lock` (no `# pyfunc-env lock:` header)"
                .into(),
            source: None,
        })?;
    let field = |name: &str| {
        header
            .split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let key = field("key").unwrap_or_default();
    let env_manager = field("env-manager").unwrap_or_default();
    let lock = LockFile::from_str_with_base_directory(&text, path.parent()).map_err(|e| {
        LockError::LockInvalid {
            path: path.to_path_buf(),
            message: "it does not parse".into(),
            source: Some(e.into()),
        }
    })?;
    let platform = current_platform()?;
    let environment = lock
        .default_environment()
        .ok_or_else(|| LockError::LockInvalid {
            path: path.to_path_buf(),
            message: "it has no default environment".into(),
            source: None,
        })?;
    let locked_platform =
        lock.platform(platform.as_str())
            .ok_or_else(|| LockError::LockInvalid {
                path: path.to_path_buf(),
                message: format!("it has nothing for this platform (`{platform}`)"),
                source: None,
            })?;
    let conda = environment
        .conda_repodata_records(locked_platform)
        .map_err(|e| LockError::LockInvalid {
            path: path.to_path_buf(),
            message: "its conda packages cannot be read".into(),
            source: Some(e.into()),
        })?
        .unwrap_or_default();
    let pypi = environment
        .pypi_packages(locked_platform)
        .into_iter()
        .flatten()
        .filter_map(|p| match p {
            PypiPackageData::Distribution(d) => Some(LockedDistribution {
                name: d.name.to_string(),
                version: d.version.to_string(),
                url: d.location.to_string(),
                sha256: d
                    .hash
                    .as_ref()
                    .and_then(PackageHashes::sha256)
                    .map(|h| env_spec::spec::hex(h)),
            }),
            PypiPackageData::Source(_) => None,
        })
        .collect();
    Ok(LockedEnv {
        key,
        env_manager,
        conda,
        pypi,
        text,
    })
}

/// Applies URL-prefix mirrors to locked conda URLs (a lock names the URLs it was made with;
/// the machine installing from it may reach them through a mirror).
pub fn apply_mirrors(records: &mut [RepoDataRecord], mirrors: &[(String, String)]) {
    for record in records {
        let url = record.url.to_string();
        let best = mirrors
            .iter()
            .filter(|(from, _)| from.contains("://") && url.starts_with(from.trim_end_matches('/')))
            .max_by_key(|(from, _)| from.len());
        if let Some((from, to)) = best
            && let Ok(mirrored) = url::Url::parse(&format!(
                "{}{}",
                to.trim_end_matches('/'),
                &url[from.trim_end_matches('/').len()..]
            ))
        {
            record.url = mirrored;
        }
    }
}

/// The requirements file that installs exactly the locked distributions from a directory
/// holding their files (see [`fetch_files`]).
#[must_use]
pub fn requirements_text(pypi: &[LockedDistribution]) -> String {
    pypi.iter()
        .map(|d| match &d.sha256 {
            Some(hash) => format!("{}=={} --hash=sha256:{hash}\n", d.name, d.version),
            None => format!("{}=={}\n", d.name, d.version),
        })
        .collect()
}

/// Downloads (or copies, for `file:` URLs) every locked file into `dir`, checking each sha256.
/// uv then installs them from there as from an index, so a locked environment is file for file
/// the environment the lock was made from (a `name @ url` install would add `direct_url.json`).
pub async fn fetch_files(
    pypi: &[LockedDistribution],
    dir: &Path,
    offline: bool,
) -> Result<(), LockError> {
    use sha2::Digest;
    let client = reqwest::Client::builder()
        .user_agent(concat!("pyfunc-env/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(lock_failed("cannot start an HTTP client"))?;
    for dist in pypi {
        // Local files are written as paths in pixi locks.
        let url = url::Url::parse(&dist.url)
            .or_else(|e| url::Url::from_file_path(&dist.url).map_err(|()| e))
            .map_err(lock_failed(format!("`{}` is not a URL", dist.url)))?;
        let file_name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| lock_error(format!("`{}` names no file", dist.url)))?
            .to_string();
        // Streamed to a partial file while hashing: a wheel is never held in memory whole
        // (torch's is 800 MB), and a file that fails its hash never gets its final name.
        let target = dir.join(&file_name);
        let partial = dir.join(format!("{file_name}.part"));
        let mut out = fs_err::File::create(&partial).map_err(|e| LockError::Io {
            path: partial.clone(),
            source: e,
        })?;
        let write_failed = |e: std::io::Error| LockError::Io {
            path: partial.clone(),
            source: e,
        };
        let mut hasher = sha2::Sha256::new();
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| lock_error(format!("`{}` is not a local path", dist.url)))?;
            let mut input = fs_err::File::open(&path).map_err(|e| LockError::Io {
                path: path.clone(),
                source: e,
            })?;
            let mut buffer = vec![0u8; 1 << 16];
            loop {
                let read =
                    std::io::Read::read(&mut input, &mut buffer).map_err(|e| LockError::Io {
                        path: path.clone(),
                        source: e,
                    })?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                std::io::Write::write_all(&mut out, &buffer[..read]).map_err(write_failed)?;
            }
        } else if offline {
            return Err(LockError::OfflinePackagesMissing {
                packages: file_name,
            });
        } else {
            let failed = |source: reqwest::Error| LockError::LockDownload {
                url: env_spec::redact::redact_url(url.as_str()),
                source,
            };
            let mut response = client
                .get(url.clone())
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(failed)?;
            while let Some(chunk) = response.chunk().await.map_err(failed)? {
                hasher.update(&chunk);
                std::io::Write::write_all(&mut out, &chunk).map_err(write_failed)?;
            }
        }
        drop(out);
        if let Some(expected) = &dist.sha256 {
            let actual = env_spec::spec::hex(&hasher.finalize());
            if &actual != expected {
                let _ = fs_err::remove_file(&partial);
                return Err(LockError::LockHashMismatch {
                    file: file_name,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        fs_err::rename(&partial, &target).map_err(|e| LockError::Io {
            path: target.clone(),
            source: e,
        })?;
    }
    Ok(())
}

/// The default lock file next to a model.
#[must_use]
pub fn default_lock_path(model_root: &Path) -> PathBuf {
    model_root.join("pyfunc-env.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_that_does_not_parse_keeps_the_parsers_error_as_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pyfunc-env.lock");
        fs_err::write(
            &path,
            format!("{HEADER} key=k env-manager=conda\nversion: [\n"),
        )
        .unwrap();
        let error = read_lock(&path).unwrap_err();
        assert!(matches!(error, LockError::LockInvalid { .. }), "{error:?}");
        // The message names the file and what is wrong; the parser's words are the cause,
        // one `Caused by:` line in the report, not flattened into the message (issue 11).
        assert_eq!(
            error.to_string(),
            format!(
                "Cannot use the lock file `{}`: it does not parse",
                path.display()
            )
        );
        assert!(std::error::Error::source(&error).is_some());
    }

    #[tokio::test]
    async fn locked_files_are_streamed_to_disk_and_kept_only_when_their_hash_matches() {
        let source = tempfile::tempdir().unwrap();
        let wheel = source.path().join("pkg-1.0-py3-none-any.whl");
        // Larger than one copy buffer, so the hash covers several chunks.
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs_err::write(&wheel, &bytes).unwrap();
        let good = env_spec::spec::sha256_hex(&bytes);
        let dist = |sha256: &str| LockedDistribution {
            name: "pkg".into(),
            version: "1.0".into(),
            url: url::Url::from_file_path(&wheel).unwrap().to_string(),
            sha256: Some(sha256.into()),
        };
        let out = tempfile::tempdir().unwrap();
        fetch_files(&[dist(&good)], out.path(), true).await.unwrap();
        assert_eq!(
            fs_err::read(out.path().join("pkg-1.0-py3-none-any.whl")).unwrap(),
            bytes
        );
        let bad = tempfile::tempdir().unwrap();
        let err = fetch_files(&[dist(&"0".repeat(64))], bad.path(), true)
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::LockHashMismatch { ref actual, .. } if *actual == good));
        assert_eq!(fs_err::read_dir(bad.path()).unwrap().count(), 0);
    }
}
