//! The archive's bytecode, made by env-bytecode ([`env_bytecode::archive`], the one driver of
//! every `.pyc` compile): this module only turns the plan's sources into its inputs and its
//! `.pyc` files into plan entries. Never compiled into the cached environment.

use env_bytecode::{ArchiveLibrary, ArchivePyc, ArchiveSource, BytecodeError};

use crate::relocate::Relocation;
use crate::scan::{Environment, Plan, Source, compile_exclusions};
use crate::{CommandFailed, PackError, PackOptions};

/// The environment's library as env-bytecode sees it.
fn library<'a>(
    environment: &'a Environment,
    python: &'a std::path::Path,
    options: &'a PackOptions,
    relocation: Option<&'a Relocation>,
) -> ArchiveLibrary<'a> {
    ArchiveLibrary {
        root: &environment.root,
        python,
        stdlib: &environment.stdlib,
        python_minor: &environment.python_minor,
        destination: relocation.map(|r| r.to.as_str()),
        staging_dir: &options.staging_dir,
    }
}

/// env-bytecode's error as env-pack always reported it (the same messages and exit code).
fn pack_error(error: BytecodeError) -> PackError {
    match error {
        BytecodeError::PythonFailed { python, message } => PackError::PythonFailed {
            python,
            source: CommandFailed { message },
        },
        BytecodeError::Io { path, source } => PackError::Io { path, source },
        // The archive functions take no lock and ask for no cache tag; kept as the cause of
        // an I/O error (exit code 2) should that change.
        other @ (BytecodeError::Cache(_) | BytecodeError::Internal { .. }) => PackError::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(other),
        },
    }
}

/// Compiles the environment's `lib/python3.X` into a new staging directory, returned
/// ([`env_bytecode::compile_for_archive`]). With `relocation`, the bytecode names the sources
/// at the destination, and the sources `plan` rewrote are compiled from their new text.
pub(crate) fn compile(
    environment: &Environment,
    options: &PackOptions,
    relocation: Option<&Relocation>,
    plan: &Plan,
) -> Result<tempfile::TempDir, PackError> {
    let python = environment.python();
    let exclusions = compile_exclusions(environment, options);
    let rewritten: Vec<(&str, &[u8])> = plan
        .items
        .iter()
        .filter_map(|item| match &item.source {
            Source::Bytes(bytes) => Some((item.path.as_str(), bytes.as_slice())),
            _ => None,
        })
        .collect();
    env_bytecode::compile_for_archive(
        &library(environment, &python, options, relocation),
        &exclusions,
        &rewritten,
    )
    .map_err(pack_error)
}

/// Bytecode for an archive whose mtimes are kept where it is extracted (an image layer, every
/// entry at `options.mtime`): the environment's own valid `.pyc` files, only the sources
/// without one compiled ([`env_bytecode::reuse_for_archive`]), added to `plan`. Returns the
/// staging directory of what was compiled.
pub(crate) fn reuse(
    environment: &Environment,
    options: &PackOptions,
    relocation: Option<&Relocation>,
    plan: &mut Plan,
) -> Result<tempfile::TempDir, PackError> {
    let python = environment.python();
    let sources: Vec<(&str, ArchiveSource<'_>)> = plan
        .items
        .iter()
        .filter_map(|item| match &item.source {
            Source::File(path) => Some((item.path.as_str(), ArchiveSource::File(path))),
            Source::Bytes(bytes) => Some((item.path.as_str(), ArchiveSource::Rewritten(bytes))),
            Source::Dir | Source::Symlink(_) | Source::Pyc(..) => None,
        })
        .collect();
    let reused = env_bytecode::reuse_for_archive(
        &library(environment, &python, options, relocation),
        options.mtime,
        &sources,
    )
    .map_err(pack_error)?;
    let mut dirs = std::collections::BTreeSet::new();
    for (path, pyc) in reused.files {
        if let Some((dir, _)) = path.rsplit_once('/') {
            dirs.insert(dir.to_string());
        }
        let source = match pyc {
            ArchivePyc::Retimed(pyc, mtime) => Source::Pyc(pyc, mtime),
            ArchivePyc::File(pyc) => Source::File(pyc),
        };
        plan.items.push(crate::scan::Item {
            path,
            mode: 0o644,
            source,
        });
        plan.bytecode_files += 1;
    }
    for path in dirs {
        plan.items.push(crate::scan::Item {
            path,
            mode: 0o755,
            source: Source::Dir,
        });
    }
    Ok(reused.staging)
}
