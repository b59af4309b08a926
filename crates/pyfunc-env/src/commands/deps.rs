//! `pyfunc-env deps`: what `mlflow.pyfunc.get_model_dependencies` gives, or the canonical spec.

use std::path::Path;

use anyhow::Context;
use env_spec::ModelDir;
use serde::Serialize;

use crate::cli::{DepsArgs, DepsFormat};
use crate::commands::{open_model, print_warnings, write_atomic};
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// Version of the `--format json` document.
pub const SPEC_SCHEMA_VERSION: u32 = 1;

/// The `deps --format json` document (schema in the README).
#[derive(Debug, Serialize)]
pub struct SpecDocument<'a> {
    /// [`SPEC_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model directory (canonical path).
    pub model_dir: String,
    /// `conda` or `virtualenv`.
    pub env_manager: env_spec::EnvManager,
    /// The key of the environment `create` builds for this model on this machine with default
    /// flags (with a `pyfunc-env.lock` in the model directory, the key of that lock).
    pub key: env_spec::EnvKey,
    /// Everything besides the spec that the key covers.
    pub key_context: &'a env_spec::KeyContext,
    /// The files the environment is derived from.
    pub files: &'a [String],
    /// The canonical spec the key is computed over (effective channels: `nodefaults` dropped,
    /// `conda-forge` when the model names none).
    pub spec: &'a env_spec::EnvSpec,
    /// Warnings about the model's files.
    pub warnings: &'a [env_spec::Warning],
}

/// Builds the JSON spec document of the model's environment under default settings: the spec,
/// context and key that `create` uses for it.
pub fn spec_json(
    model: ModelDir,
    manager: env_spec::EnvManager,
    settings: &Settings,
) -> anyhow::Result<(String, Vec<env_spec::Warning>)> {
    let request = env_solve::EnvRequest {
        manager: Some(manager),
        uv: settings.uv.clone(),
        ..env_solve::EnvRequest::default()
    };
    let env = env_solve::ModelEnvironment::resolve(model, &request)?;
    let document = SpecDocument {
        schema_version: SPEC_SCHEMA_VERSION,
        model_dir: env.root().display().to_string(),
        env_manager: env.manager,
        key: env.key.clone(),
        key_context: &env.context,
        files: &env.resolved.files,
        spec: &env.resolved.spec,
        warnings: &env.resolved.warnings,
    };
    let mut text = serde_json::to_string_pretty(&document)?;
    text.push('\n');
    Ok((text, env.resolved.warnings.clone()))
}

/// `text` (a requirements or conda file) with the secrets of every URL in it masked
/// (`--index-url https://user:****@host/simple`, `/t/****/`, `?token=****`); the rest is
/// unchanged byte for byte.
fn mask_url_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        match word.find("://") {
            Some(scheme_end) => {
                // `--index-url=https://...`: the URL starts after the last `=` before `://`.
                let start = word[..scheme_end].rfind('=').map_or(0, |i| i + 1);
                out.push_str(&word[..start]);
                let url = &word[start..];
                out.push_str(&env_spec::redact::mask_userinfo(
                    &env_spec::redact::redact_url(url),
                ));
            }
            None => out.push_str(word),
        }
        let space_end = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&tail[..space_end]);
        rest = &tail[space_end..];
    }
    out
}

/// Refuses an `-o` path that cannot be written for a reason the caller can fix (exit 1 with a
/// hint rather than an I/O error about a temporary file).
fn check_output_path(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Err(UserError::new(format!(
            "Cannot write to `{}`: it is a directory",
            path.display()
        ))
        .with_hint("Pass a file name to `-o`, e.g. `-o requirements.txt`")
        .into());
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(UserError::new(format!(
            "Cannot write to `{}`: the directory `{}` does not exist",
            path.display(),
            parent.display()
        ))
        .with_hint("Create the directory first, or pass another path to `-o`")
        .into());
    }
    Ok(())
}

/// Runs `deps`.
pub async fn deps(
    args: &DepsArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    if let Some(path) = &args.output {
        check_output_path(path)?;
    }
    let (model, _model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    let (text, warnings) = match args.format {
        DepsFormat::Pip => {
            let deps = model.pip_dependencies().with_context(|| {
                format!(
                    "Failed to get the pip requirements of `{}`",
                    args.model.model
                )
            })?;
            (deps.text, deps.warnings)
        }
        DepsFormat::Conda => {
            let deps = model.conda_dependencies().with_context(|| {
                format!(
                    "Failed to get the conda environment of `{}`",
                    args.model.model
                )
            })?;
            (deps.text, deps.warnings)
        }
        DepsFormat::Json => {
            let manager = match args.env_manager {
                None => model.default_env_manager(),
                Some(arg) => arg.manager().ok_or_else(|| {
                    UserError::new(
                        "`--env-manager local` builds no environment, so it has no spec",
                    )
                    .with_hint("Pass `--env-manager conda`, `virtualenv` or `uv`, or leave it out for the model's default")
                })?,
            };
            spec_json(model, manager, settings)?
        }
    };
    print_warnings(printer, &warnings);
    match &args.output {
        // The file is the model's, credentials included: it is meant to be installed from.
        Some(path) => {
            write_atomic(path, &text)?;
            printer.info(format!("Wrote {}", printer.cyan(path.display())));
        }
        // On a terminal or in a build log, secrets are masked, as `--format json` masks them.
        None => printer
            .data(mask_url_secrets(&text))
            .context("Failed to write to stdout")?,
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets_and_nothing_else_changes() {
        let text = "--index-url http://alice:hunter22@idx.example/simple\n--extra-index-url=https://x.example/t/tk-123/simple?token=abcdef\n  -f https://TOKEN0123456789@links.example/w\nnumpy==1.26.4 # https://plain.example/\n\r\n";
        assert_eq!(
            mask_url_secrets(text),
            "--index-url http://alice:****@idx.example/simple\n--extra-index-url=https://x.example/t/****/simple?token=****\n  -f https://****@links.example/w\nnumpy==1.26.4 # https://plain.example/\n\r\n"
        );
        assert_eq!(mask_url_secrets(""), "");
    }

    #[test]
    fn output_paths_that_cannot_be_written_are_the_callers_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        check_output_path(&dir.path().join("spec.json")).unwrap();
        check_output_path(Path::new("spec.json")).unwrap();
        for (path, message) in [
            (dir.path().to_path_buf(), "it is a directory"),
            (dir.path().join("missing/spec.json"), "does not exist"),
        ] {
            let err = check_output_path(&path).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            assert_eq!(crate::report::exit_status(&err), ExitStatus::Failure);
            assert!(err.downcast_ref::<UserError>().unwrap().hint.is_some());
        }
    }
}
