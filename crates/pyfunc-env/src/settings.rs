//! The CLI's settings are [`env_settings::Settings`] (flag, then variable, then configuration
//! file, then default; resolved in `env-settings`): the CLI only maps its flags to
//! [`env_settings::Options`] ([`crate::cli::GlobalArgs::settings`]).

pub use env_settings::Settings;
