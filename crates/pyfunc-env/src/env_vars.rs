//! The `--help` section on model URIs (the variables and their meanings are env-source's
//! [`env_source::MODEL_URI_VARS`]); the variables themselves are [`EnvVars`], in `env-settings`.

pub use env_settings::EnvVars;

/// The `--help` section on model URIs and the variables they read.
#[must_use]
pub fn model_uris_help() -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        "Model URIs (any MODEL argument): a directory, file://, models:/NAME/VERSION, \
         models:/NAME@ALIAS,\n  models:/NAME/latest, models:/NAME/STAGE, runs:/RUN_ID/PATH, \
         mlflow-artifacts:/PATH,\n  s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, \
         wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH,\n  \
         abfss://FILESYSTEM@ACCOUNT.dfs.core.windows.net/PATH\n\nModel URI settings:\n",
    );
    for (name, meaning) in env_source::MODEL_URI_VARS {
        let _ = writeln!(text, "  {name:<36} {meaning}");
    }
    text
}
