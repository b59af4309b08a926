//! The Python of a virtualenv build: from a conda channel, or an interpreter on this machine.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use env_cache::Cache;
use rattler_conda_types::RepoDataRecord;

use crate::context::PythonSource;
use crate::error::SolveError;
use crate::reporter::Reporter;

use super::{CreateRequest, Timings, conda_layer, off_runtime, secs, uv_cache_dir};

pub(super) struct Provisioned {
    pub(super) records: Vec<RepoDataRecord>,
    pub(super) warnings: Vec<String>,
}

/// Puts the requested Python into `prefix`: from a conda channel with rattler, or from an
/// interpreter on this machine with `uv venv`. The exact version if anything has it; else the
/// same minor version with a warning naming both; never another minor version.
pub(super) async fn provision_python(
    cache: &Cache,
    request: &CreateRequest<'_>,
    prefix: &Path,
    version: &str,
    timings: &mut Timings,
    reporter: &Arc<dyn Reporter>,
) -> Result<Provisioned, SolveError> {
    let (major, minor, patch) =
        env_python::parse_version(version).ok_or_else(|| SolveError::InvalidPythonVersion {
            version: version.to_string(),
        })?;
    let minor_spec = format!("python {major}.{minor}.*");
    let exact_spec = match patch {
        Some(patch) => format!("python {major}.{minor}.{patch}.*"),
        None => minor_spec.clone(),
    };
    let channel_names = request.channels.effective(&[]);
    let order: &[(&str, bool)] = match request.options.python_source {
        PythonSource::Conda => &[("conda", true), ("conda", false)],
        PythonSource::System => &[("system", true), ("system", false)],
        PythonSource::Auto => &[
            ("conda", true),
            ("system", true),
            ("conda", false),
            ("system", false),
        ],
    };
    let mut attempts: Vec<String> = Vec::new();
    for (source, exact) in order {
        if patch.is_none() && !exact {
            continue;
        }
        if *source == "conda" {
            let spec = if *exact { &exact_spec } else { &minor_spec };
            match conda_layer(
                cache,
                request,
                prefix,
                &channel_names,
                std::slice::from_ref(spec),
                timings,
                reporter,
            )
            .await
            {
                Ok(records) => {
                    let got = records
                        .iter()
                        .find(|r| r.package_record.name.as_normalized() == "python")
                        .map(|r| r.package_record.version.to_string())
                        .unwrap_or_default();
                    let mut warnings = Vec::new();
                    if !exact {
                        warnings.push(format!("Python {version} is not available; using Python {got} from conda (same minor version)"));
                    }
                    return Ok(Provisioned { records, warnings });
                }
                Err(
                    err @ (SolveError::Conda(
                        env_conda::CondaError::Install { .. } | env_conda::CondaError::Io { .. },
                    )
                    | SolveError::Cache(_)
                    | SolveError::Io { .. }),
                ) => return Err(err),
                Err(err) => {
                    let err = crate::error::chain(&err);
                    tracing::debug!("Python from conda (`{spec}`) is not available: {err}");
                    attempts.push(format!("conda `{spec}`: {err}"));
                }
            }
        } else {
            let candidates = env_python::find(version);
            let chosen = candidates.into_iter().find(|i| {
                !exact || env_python::parse_version(&i.version).and_then(|v| v.2) == patch
            });
            let Some(interpreter) = chosen else {
                attempts.push(format!(
                    "this machine: no Python {}",
                    if *exact {
                        version.to_string()
                    } else {
                        format!("{major}.{minor}.x")
                    }
                ));
                continue;
            };
            reporter.on_phase(&format!(
                "Creating a virtualenv from {} ({})",
                interpreter.path.display(),
                interpreter.source
            ));
            let t = Instant::now();
            let uv = request.uv.find(cache, request.offline).await?;
            let uv_cache = uv_cache_dir(cache, request)?;
            let (interpreter_path, target, reporter) = (
                interpreter.path.clone(),
                prefix.to_path_buf(),
                crate::reporter::uv_lines(reporter),
            );
            off_runtime(move || {
                uv.venv(&interpreter_path, &target, &uv_cache, &reporter)
                    .map_err(SolveError::from)
            })
            .await?;
            timings.conda_install += secs(t.elapsed());
            let mut warnings = Vec::new();
            if !exact {
                warnings.push(format!(
                    "Python {version} is not available; using Python {} from {} (same minor version)",
                    interpreter.version,
                    interpreter.path.display()
                ));
            }
            return Ok(Provisioned {
                records: Vec::new(),
                warnings,
            });
        }
    }
    Err(SolveError::PythonUnavailable {
        version: version.to_string(),
        attempts: attempts.join("\n"),
    })
}

pub(super) fn python_version_of(python: &Path) -> Option<String> {
    let output = env_cache::child::output(env_prefix::isolated_python(python).args([
        "-c",
        "import sys; print('.'.join(map(str, sys.version_info[:3])))",
    ]))
    .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
