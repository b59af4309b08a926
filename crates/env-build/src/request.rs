//! The flags that decide a model's environment, as plain values, and the one place that turns
//! them into an [`EnvRequest`]: flags before configuration (mirrors, the uv binary), what a
//! bare `--install-mlflow` means, and which lock file a build installs from. The CLI maps its
//! clap arguments and settings onto [`RequestFlags`] field by field and decides nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use env_spec::EnvManager;

use crate::channels::{ChannelSettings, merge_mirrors};
use crate::environment::{EnvRequest, InstallMlflow, LockChoice};
use crate::{BuildOptions, PythonSource, SolveError};

/// What `create`, `lock`, `run`, `pack`, `image` and `cache push` were told about the
/// environment (flags, and the configuration they fall back on).
#[derive(Debug, Clone, Default)]
pub struct RequestFlags<'a> {
    /// `--env-manager` (a manager that builds something); `None` for the model's default.
    pub manager: Option<EnvManager>,
    /// `--env-manager local`: nothing to build, so [`Self::into_request`] refuses it (`run`
    /// takes it before asking for a request).
    pub local: bool,
    /// `--python-version`.
    pub python_version: Option<String>,
    /// `--install-mlflow[=VERSION]`: `""` without a value.
    pub install_mlflow: Option<String>,
    /// `--mirror FROM=TO` flags.
    pub mirrors: &'a [String],
    /// The configured mirrors (`PYFUNC_ENV_MIRRORS`, then the configuration file).
    pub configured_mirrors: Option<&'a BTreeMap<String, String>>,
    /// `--channel`.
    pub channels: Vec<String>,
    /// `--override-channels`.
    pub override_channels: bool,
    /// `--no-compile`.
    pub no_compile: bool,
    /// `--exclude-newer`.
    pub exclude_newer: Option<String>,
    /// `--python-source`.
    pub python_source: PythonSource,
    /// `--locked FILE`.
    pub locked: Option<PathBuf>,
    /// `--no-lock`.
    pub no_lock: bool,
    /// `--uv`.
    pub uv: Option<PathBuf>,
    /// The configured uv binary (`PYFUNC_ENV_UV`, the configuration file).
    pub configured_uv: Option<PathBuf>,
    /// `-r/--pip-requirements-override`.
    pub pip_requirements_override: Vec<String>,
    /// `--no-compat-constraints`.
    pub no_compat_constraints: bool,
}

impl RequestFlags<'_> {
    /// The request: each `--mirror` over the configured mirrors of the same channel, `--uv`
    /// over the configured binary, bytecode compiled unless `--no-compile`, the model's own
    /// lock file unless `--locked FILE` or `--no-lock`.
    ///
    /// # Errors
    /// `--env-manager local` ([`SolveError::LocalBuildsNothing`]), or a `--mirror` or
    /// configured mirror that does not parse.
    pub fn into_request(self) -> Result<EnvRequest, SolveError> {
        if self.local {
            return Err(SolveError::LocalBuildsNothing);
        }
        Ok(EnvRequest {
            manager: self.manager,
            python_version: self.python_version,
            install_mlflow: self.install_mlflow.as_deref().map(InstallMlflow::from_flag),
            channels: ChannelSettings {
                mirrors: merge_mirrors(
                    self.mirrors,
                    self.configured_mirrors.into_iter().flatten(),
                )?,
                channels: self.channels,
                override_channels: self.override_channels,
            },
            options: BuildOptions {
                compile_bytecode: !self.no_compile,
                exclude_newer: self.exclude_newer,
                python_source: self.python_source,
            },
            lock: LockChoice::from_flags(self.locked, self.no_lock),
            uv: self.uv.or(self.configured_uv),
            pip_requirements_override: self.pip_requirements_override,
            no_compat_constraints: self.no_compat_constraints,
        })
    }
}

impl RequestFlags<'_> {
    /// The flags given that change how an environment is built, as the user spells them, in
    /// the order `run --env-manager local` reports them (it builds none, so it refuses them);
    /// `reinstall` is `--reinstall`, a build setting rather than part of the request.
    #[must_use]
    pub fn building_flags(&self, reinstall: bool) -> Vec<String> {
        [
            ("--python-version", self.python_version.is_some()),
            ("--channel", !self.channels.is_empty()),
            ("--mirror", !self.mirrors.is_empty()),
            ("--no-compile", self.no_compile),
            ("--reinstall", reinstall),
            ("--exclude-newer", self.exclude_newer.is_some()),
            ("--locked", self.locked.is_some()),
            ("--uv", self.uv.is_some()),
            ("--no-compat-constraints", self.no_compat_constraints),
            ("--python-source", self.python_source != PythonSource::Auto),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(flag, _)| flag.to_string())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    /// `--env-manager local` builds nothing: a request for it is the user's error. (Was
    /// decided in the CLI's `environment.rs`.)
    #[test]
    fn local_is_refused_as_a_request() {
        let error = RequestFlags {
            local: true,
            ..RequestFlags::default()
        }
        .into_request()
        .unwrap_err();
        assert!(error.is_user_error());
        assert_eq!(
            error.to_string(),
            "`--env-manager local` builds no environment; it only applies to `run`"
        );
        assert!(RequestFlags::default().into_request().is_ok());
    }

    /// Only flags given count, configuration does not (a configured mirror or uv binary is
    /// not a flag the user can drop), in a fixed order. (Was the CLI's list in `commands/run`.)
    #[test]
    fn building_flags_are_the_given_flags_in_order() {
        assert!(
            RequestFlags {
                configured_uv: Some("/configured/uv".into()),
                install_mlflow: Some(String::new()),
                no_lock: true,
                ..RequestFlags::default()
            }
            .building_flags(false)
            .is_empty()
        );
        let flags = RequestFlags {
            python_source: PythonSource::System,
            uv: Some("/flag/uv".into()),
            channels: vec!["c".into()],
            ..RequestFlags::default()
        };
        assert_eq!(
            flags.building_flags(true),
            ["--channel", "--reinstall", "--uv", "--python-source"]
        );
    }

    use super::*;

    #[test]
    fn flags_come_before_configuration() {
        let configured = BTreeMap::from([
            (
                "conda-forge".to_string(),
                "https://configured/cf".to_string(),
            ),
            ("bioconda".to_string(), "https://configured/bio".to_string()),
        ]);
        let flags = ["conda-forge=https://flag/cf".to_string()];
        let request = RequestFlags {
            mirrors: &flags,
            configured_mirrors: Some(&configured),
            uv: Some("/flag/uv".into()),
            configured_uv: Some("/configured/uv".into()),
            ..RequestFlags::default()
        }
        .into_request()
        .unwrap();
        assert_eq!(request.uv, Some(PathBuf::from("/flag/uv")));
        let mirror = |name: &str| {
            request
                .channels
                .mirrors
                .iter()
                .find(|(from, _)| from == name)
                .map(|(_, to)| to.clone())
        };
        assert_eq!(mirror("conda-forge").as_deref(), Some("https://flag/cf"));
        assert_eq!(
            mirror("bioconda").as_deref(),
            Some("https://configured/bio")
        );
        let configured_only = RequestFlags {
            configured_uv: Some("/configured/uv".into()),
            ..RequestFlags::default()
        }
        .into_request()
        .unwrap();
        assert_eq!(configured_only.uv, Some(PathBuf::from("/configured/uv")));
    }

    #[test]
    fn defaults_compile_and_use_the_models_lock() {
        let request = RequestFlags::default().into_request().unwrap();
        assert!(request.options.compile_bytecode);
        assert!(matches!(request.lock, LockChoice::Auto));
        assert!(request.install_mlflow.is_none());
        let request = RequestFlags {
            no_compile: true,
            no_lock: true,
            install_mlflow: Some(String::new()),
            ..RequestFlags::default()
        }
        .into_request()
        .unwrap();
        assert!(!request.options.compile_bytecode);
        assert!(matches!(request.lock, LockChoice::Ignore));
        assert!(matches!(
            request.install_mlflow,
            Some(InstallMlflow::Recorded)
        ));
        assert!(
            RequestFlags {
                mirrors: &["no-equals-sign".to_string()],
                ..RequestFlags::default()
            }
            .into_request()
            .is_err()
        );
    }
}
