//! Settings under MLflow's own names, so a shell set up for `mlflow` works unchanged.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::{SentCredentials, SourceError};

/// `name` as MLflow's `_EnvironmentVariable(name, int, default).get()` reads it, then checked
/// against `range`: unset is `default`; anything Python's `int()` refuses (`0.5`, an empty
/// value) or outside the range is an error naming the variable.
fn mlflow_int(
    name: &'static str,
    value: Option<String>,
    default: i64,
    range: RangeInclusive<i64>,
    expected: &'static str,
) -> Result<i64, SourceError> {
    let Some(value) = value else {
        return Ok(default);
    };
    // `int()` takes surrounding whitespace, a sign, and `_` between digits.
    let trimmed = value.trim();
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let number = well_formed
        .then(|| trimmed.replace('_', "").parse::<i64>().ok())
        .flatten();
    match number {
        Some(number) if range.contains(&number) => Ok(number),
        _ => Err(SourceError::InvalidSetting {
            name,
            value: env_spec::redact::redact(&value),
            expected,
        }),
    }
}

/// The environment variables read, as MLflow names them.
pub struct Vars;

impl Vars {
    /// The tracking server (`http(s)://host:port[/prefix]`).
    pub const MLFLOW_TRACKING_URI: &'static str = "MLFLOW_TRACKING_URI";
    /// The model registry, if not the tracking server.
    pub const MLFLOW_REGISTRY_URI: &'static str = "MLFLOW_REGISTRY_URI";
    /// A bearer token.
    pub const MLFLOW_TRACKING_TOKEN: &'static str = "MLFLOW_TRACKING_TOKEN";
    /// Basic-auth user name.
    pub const MLFLOW_TRACKING_USERNAME: &'static str = "MLFLOW_TRACKING_USERNAME";
    /// Basic-auth password.
    pub const MLFLOW_TRACKING_PASSWORD: &'static str = "MLFLOW_TRACKING_PASSWORD";
    /// `true` skips TLS certificate verification.
    pub const MLFLOW_TRACKING_INSECURE_TLS: &'static str = "MLFLOW_TRACKING_INSECURE_TLS";
    /// A CA bundle (PEM) to verify the server with.
    pub const MLFLOW_TRACKING_SERVER_CERT_PATH: &'static str = "MLFLOW_TRACKING_SERVER_CERT_PATH";
    /// A client certificate and key (PEM) for mutual TLS.
    pub const MLFLOW_TRACKING_CLIENT_CERT_PATH: &'static str = "MLFLOW_TRACKING_CLIENT_CERT_PATH";
    /// Retries after the first attempt (MLflow's default: 7).
    pub const MLFLOW_HTTP_REQUEST_MAX_RETRIES: &'static str = "MLFLOW_HTTP_REQUEST_MAX_RETRIES";
    /// Backoff factor in seconds (MLflow's default: 2): waits of factor × 2^n, at most 120 s.
    pub const MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: &'static str =
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR";
    /// Per-request timeout in seconds (MLflow's default: 120).
    pub const MLFLOW_HTTP_REQUEST_TIMEOUT: &'static str = "MLFLOW_HTTP_REQUEST_TIMEOUT";
}

/// Where models come from and how to reach it. `Debug` never shows a secret.
#[derive(Clone, Default)]
pub struct SourceSettings {
    /// `MLFLOW_TRACKING_URI`.
    pub tracking_uri: Option<String>,
    /// `MLFLOW_REGISTRY_URI` (defaults to the tracking URI).
    pub registry_uri: Option<String>,
    /// `MLFLOW_TRACKING_TOKEN`.
    pub token: Option<String>,
    /// `MLFLOW_TRACKING_USERNAME`.
    pub username: Option<String>,
    /// `MLFLOW_TRACKING_PASSWORD`.
    pub password: Option<String>,
    /// `MLFLOW_TRACKING_INSECURE_TLS`.
    pub insecure_tls: bool,
    /// `MLFLOW_TRACKING_SERVER_CERT_PATH`.
    pub server_cert_path: Option<PathBuf>,
    /// `MLFLOW_TRACKING_CLIENT_CERT_PATH`.
    pub client_cert_path: Option<PathBuf>,
    /// `MLFLOW_HTTP_REQUEST_MAX_RETRIES`.
    pub max_retries: u32,
    /// `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`.
    pub backoff_factor: Duration,
    /// `MLFLOW_HTTP_REQUEST_TIMEOUT`.
    pub timeout: Duration,
    /// No network: only cached sources.
    pub offline: bool,
}

impl std::fmt::Debug for SourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |v: &Option<String>| v.as_ref().map(|_| env_spec::redact::MASK);
        f.debug_struct("SourceSettings")
            .field(
                "tracking_uri",
                &self
                    .tracking_uri
                    .as_deref()
                    .map(env_spec::redact::redact_url),
            )
            .field(
                "registry_uri",
                &self
                    .registry_uri
                    .as_deref()
                    .map(env_spec::redact::redact_url),
            )
            .field("token", &masked(&self.token))
            .field("username", &self.username)
            .field("password", &masked(&self.password))
            .field("insecure_tls", &self.insecure_tls)
            .field("server_cert_path", &self.server_cert_path)
            .field("client_cert_path", &self.client_cert_path)
            .field("max_retries", &self.max_retries)
            .field("backoff_factor", &self.backoff_factor)
            .field("timeout", &self.timeout)
            .field("offline", &self.offline)
            .finish()
    }
}

impl SourceSettings {
    /// Reads MLflow's variables through `get` (the process environment in the CLI). The HTTP
    /// settings are read as MLflow 3.17 reads them (`mlflow/environment_variables.py`,
    /// `_validate_max_retries`, `_validate_backoff_factor` in `mlflow/utils/rest_utils.py`): a
    /// whole number (`int(value)`), retries from 0 to 10, a backoff factor from 0 to 120; any
    /// other value is an error naming the variable, never a silent default.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
        offline: bool,
    ) -> Result<Self, SourceError> {
        let raw = |name: &str| get(name);
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let max_retries = mlflow_int(
            Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES,
            raw(Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES),
            7,
            0..=10,
            "a whole number of retries from 0 to 10",
        )?;
        let backoff_factor = mlflow_int(
            Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
            raw(Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR),
            2,
            0..=120,
            "a whole number of seconds from 0 to 120 (MLflow reads it with `int()`)",
        )?;
        let timeout = mlflow_int(
            Vars::MLFLOW_HTTP_REQUEST_TIMEOUT,
            raw(Vars::MLFLOW_HTTP_REQUEST_TIMEOUT),
            120,
            1..=i64::from(u32::MAX),
            "a whole number of seconds, at least 1",
        )?;
        let settings = Self {
            tracking_uri: get(Vars::MLFLOW_TRACKING_URI),
            registry_uri: get(Vars::MLFLOW_REGISTRY_URI),
            token: get(Vars::MLFLOW_TRACKING_TOKEN),
            username: get(Vars::MLFLOW_TRACKING_USERNAME),
            password: get(Vars::MLFLOW_TRACKING_PASSWORD),
            insecure_tls: get(Vars::MLFLOW_TRACKING_INSECURE_TLS)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1"),
            server_cert_path: get(Vars::MLFLOW_TRACKING_SERVER_CERT_PATH).map(PathBuf::from),
            client_cert_path: get(Vars::MLFLOW_TRACKING_CLIENT_CERT_PATH).map(PathBuf::from),
            // Each is within its range: checked above.
            max_retries: u32::try_from(max_retries).unwrap_or(7),
            backoff_factor: Duration::from_secs(backoff_factor.unsigned_abs()),
            timeout: Duration::from_secs(timeout.unsigned_abs()),
            offline,
        };
        for uri in [&settings.tracking_uri, &settings.registry_uri]
            .into_iter()
            .flatten()
        {
            env_spec::redact::register_url(uri);
        }
        for secret in [&settings.token, &settings.password].into_iter().flatten() {
            env_spec::redact::register_secret(secret);
        }
        Ok(settings)
    }

    /// The credentials a request to the server carries: the token, else the user name and
    /// password, else those in the server's URI (as MLflow's `http_request` picks them).
    #[must_use]
    pub fn credentials(&self) -> SentCredentials {
        let in_uri = |uri: &Option<String>| {
            uri.as_deref()
                .and_then(|uri| url::Url::parse(uri).ok())
                .is_some_and(|url| !url.username().is_empty())
        };
        if self.token.is_some() {
            SentCredentials::Token
        } else if self.username.is_some() {
            SentCredentials::Password
        } else if in_uri(&self.tracking_uri) || in_uri(&self.registry_uri) {
            SentCredentials::InUri
        } else {
            SentCredentials::None
        }
    }

    /// The registry: `MLFLOW_REGISTRY_URI`, else the tracking server.
    #[must_use]
    pub fn registry(&self) -> Option<&str> {
        self.registry_uri
            .as_deref()
            .or(self.tracking_uri.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_settings_are_read_as_mlflow_reads_them() {
        let read = |name: &'static str, value: &str| {
            let value = value.to_string();
            SourceSettings::from_env(move |n| (n == name).then(|| value.clone()), false)
        };
        let factor = read(Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, " 3 ").unwrap();
        assert_eq!(factor.backoff_factor, Duration::from_secs(3));
        assert_eq!(
            read(Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES, "1_0")
                .unwrap()
                .max_retries,
            10
        );
        // MLflow raises for each of these; none is silently read as the default.
        for (name, value) in [
            (Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, "0.5"),
            (Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, "121"),
            (Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, "-1"),
            (Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, ""),
            (Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES, "11"),
            (Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES, "three"),
            (Vars::MLFLOW_HTTP_REQUEST_TIMEOUT, "1.5"),
            (Vars::MLFLOW_HTTP_REQUEST_TIMEOUT, "0"),
        ] {
            let error = read(name, value).unwrap_err();
            assert!(
                matches!(&error, SourceError::InvalidSetting { name: n, .. } if *n == name),
                "{name}={value}: {error:?}"
            );
            assert!(error.is_user_error());
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let settings = SourceSettings::from_env(
            |name| match name {
                "MLFLOW_TRACKING_URI" => Some("http://alice:pw-in-url@host:5000".into()),
                "MLFLOW_TRACKING_TOKEN" => Some("tok-secret-123".into()),
                "MLFLOW_TRACKING_PASSWORD" => Some("pass-secret-456".into()),
                _ => None,
            },
            false,
        )
        .unwrap();
        let text = format!("{settings:?}");
        for secret in ["pw-in-url", "tok-secret-123", "pass-secret-456"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(
            settings.registry(),
            Some("http://alice:pw-in-url@host:5000")
        );
        assert_eq!(settings.max_retries, 7);
    }
}
