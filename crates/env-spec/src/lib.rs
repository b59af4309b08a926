//! Reads an MLflow model directory's environment files exactly as MLflow reads them.
//!
//! `MLmodel`, `conda.yaml`, `python_env.yaml`, `requirements.txt`, `constraints.txt` and a uv
//! project's `uv.lock`, `pyproject.toml` and `.python-version` are read
//! with MLflow's rules (PyYAML's YAML 1.1 typing, MLflow's requirement-line handling, its choice
//! of files per env manager) into typed data ([`ModelDir`]), and from there into one canonical
//! [`EnvSpec`] with a stable content [key](EnvSpec::key).
//!
//! This crate does no network access and spawns no processes. Paths that come from model
//! files are untrusted and never leave the model directory.
#![warn(missing_docs)]

pub mod compat;
pub mod conda;
pub mod diagnostics;
pub mod document;
pub mod error;
pub mod mlmodel;
pub mod model;
pub mod python_env;
pub mod redact;
pub mod requirements;
pub mod source;
pub mod spec;
pub mod summary;
pub mod uv_project;
pub mod yaml;

pub use diagnostics::{Warning, WarningKind};
pub use error::{MlflowError, SpecError};
pub use mlmodel::{EnvFileNames, MlModel};
pub use model::{Dependencies, ModelDir, ResolvedSpec, VirtualenvEnv, VirtualenvSource};
pub use requirements::{IndexOptions, MlflowRequirement, PipRequirement, PipSet, Target};
pub use spec::{CondaLayer, EnvKey, EnvManager, EnvManagerChoice, EnvSpec, InvalidKey, KeyContext};
pub use uv_project::{LockedPackage, UvProject};
