//! The variables are [`EnvVars`], in `env-settings`; those model URIs read, and the `--help`
//! section on them, are env-source's ([`env_source::model_uris_help`]).

pub use env_settings::EnvVars;
