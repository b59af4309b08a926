//! `deps --format json`: the [`SpecDocument`] of a model's environment under default settings,
//! the spec, context and key that `create` uses for it (a file of its own so that
//! `environment.rs` stays the deciding).

use std::path::PathBuf;

use env_spec::document::{SPEC_SCHEMA_VERSION, SpecDocument};
use env_spec::{EnvManager, ModelDir, Warning};

use crate::environment::{EnvError, EnvRequest, ModelEnvironment};

/// The pretty-printed JSON document (with a final newline) of `model`'s environment under
/// `manager` and default flags (`uv`: the uv binary the settings name), and the model's
/// warnings.
///
/// # Errors
/// The model's files cannot be read or resolved.
pub fn spec_json(
    model: ModelDir,
    manager: EnvManager,
    uv: Option<PathBuf>,
) -> Result<(String, Vec<Warning>), EnvError> {
    let request = EnvRequest {
        manager: Some(manager),
        uv,
        ..EnvRequest::default()
    };
    let env = ModelEnvironment::resolve(model, &request)?;
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
    // Plain data (strings, numbers, maps with string keys): serialising it cannot fail.
    let mut text = serde_json::to_string_pretty(&document).expect("the spec document serialises");
    text.push('\n');
    Ok((text, env.resolved.warnings.clone()))
}
