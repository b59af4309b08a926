//! Settings under MLflow's own names, so a shell set up for `mlflow` works unchanged.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Reads MLflow's variables through `get` (the process environment in the CLI).
    pub fn from_env(get: impl Fn(&str) -> Option<String>, offline: bool) -> Self {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| {
            get(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(default)
        };
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
            max_retries: u32::try_from(number(Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7).min(10))
                .unwrap_or(7),
            backoff_factor: Duration::from_secs(
                number(Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, 2).min(120),
            ),
            timeout: Duration::from_secs(number(Vars::MLFLOW_HTTP_REQUEST_TIMEOUT, 120).max(1)),
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
        settings
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
    fn debug_never_shows_secrets() {
        let settings = SourceSettings::from_env(
            |name| match name {
                "MLFLOW_TRACKING_URI" => Some("http://alice:pw-in-url@host:5000".into()),
                "MLFLOW_TRACKING_TOKEN" => Some("tok-secret-123".into()),
                "MLFLOW_TRACKING_PASSWORD" => Some("pass-secret-456".into()),
                _ => None,
            },
            false,
        );
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
