//! The `deps --format json` document: the canonical spec of a model's environment, the key
//! `create` computes over it and everything else the key covers (schema in
//! `docs/reference/commands.md`; [`SPEC_SCHEMA_VERSION`] changes when a field does).

use serde::Serialize;

use crate::{EnvKey, EnvManager, EnvSpec, KeyContext, Warning};

/// Version of the `--format json` document.
pub const SPEC_SCHEMA_VERSION: u32 = 1;

/// The `deps --format json` document.
#[derive(Debug, Serialize)]
pub struct SpecDocument<'a> {
    /// [`SPEC_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model directory (canonical path).
    pub model_dir: String,
    /// `conda` or `virtualenv`.
    pub env_manager: EnvManager,
    /// The key of the environment `create` builds for this model on this machine with default
    /// flags (with a `pyfunc-env.lock` in the model directory, the key of that lock).
    pub key: EnvKey,
    /// Everything besides the spec that the key covers.
    pub key_context: &'a KeyContext,
    /// The files the environment is derived from.
    pub files: &'a [String],
    /// The canonical spec the key is computed over (effective channels: `nodefaults` dropped,
    /// `conda-forge` when the model names none).
    pub spec: &'a EnvSpec,
    /// Warnings about the model's files.
    pub warnings: &'a [Warning],
}
