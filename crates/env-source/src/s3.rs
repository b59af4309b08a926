//! `s3://` through the Arrow project's `object_store` (no hand-written signing).
//!
//! Credentials, region and endpoint are found the way boto3 (MLflow's S3 client) finds them, for
//! the subset that needs no extra service:
//! 1. the endpoint MLflow passes to boto3 itself, `MLFLOW_S3_ENDPOINT_URL`, wins; then
//!    `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, then the profile's `s3 = endpoint_url` and
//!    `endpoint_url`;
//! 2. keys from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, else the
//!    profile's static keys (`aws_access_key_id`, ... in `~/.aws/credentials`, then
//!    `~/.aws/config`), else what `object_store` finds itself (web identity, ECS, instance
//!    metadata);
//! 3. region from `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`.
//!
//! The profile is `AWS_PROFILE` (or `AWS_DEFAULT_PROFILE`), else `default`; the files are
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`, else `~/.aws/credentials` and
//! `~/.aws/config`. A named profile that exists nowhere is an error, as in boto3; a profile
//! that gets its keys from a role, SSO or a process is refused with the command that exports
//! static keys. Retries with backoff on 5xx and broken connections are `object_store`'s own
//! (mid-body included).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use object_store::aws::{AmazonS3, AmazonS3Builder};

use crate::SourceError;

/// MLflow's name for an S3-compatible endpoint.
pub const MLFLOW_S3_ENDPOINT_URL: &str = "MLFLOW_S3_ENDPOINT_URL";

/// The AWS variables read besides `object_store`'s own `AWS_*` (documented in the CLI's help).
pub struct AwsVars;

impl AwsVars {
    /// The profile to read from the shared files (else `default`).
    pub const AWS_PROFILE: &'static str = "AWS_PROFILE";
    /// The credentials file (default `~/.aws/credentials`).
    pub const AWS_SHARED_CREDENTIALS_FILE: &'static str = "AWS_SHARED_CREDENTIALS_FILE";
    /// The config file (default `~/.aws/config`).
    pub const AWS_CONFIG_FILE: &'static str = "AWS_CONFIG_FILE";
    /// Access key id.
    pub const AWS_ACCESS_KEY_ID: &'static str = "AWS_ACCESS_KEY_ID";
    /// Secret access key.
    pub const AWS_SECRET_ACCESS_KEY: &'static str = "AWS_SECRET_ACCESS_KEY";
    /// Session token for temporary credentials.
    pub const AWS_SESSION_TOKEN: &'static str = "AWS_SESSION_TOKEN";
    /// Region.
    pub const AWS_REGION: &'static str = "AWS_REGION";
    /// Endpoint of an S3-compatible store, for all services.
    pub const AWS_ENDPOINT_URL: &'static str = "AWS_ENDPOINT_URL";
    /// Endpoint of an S3-compatible store, for S3 only.
    pub const AWS_ENDPOINT_URL_S3: &'static str = "AWS_ENDPOINT_URL_S3";
}

/// Where S3 requests go and with which identity, resolved from the environment and profile.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsConfig {
    /// The profile read, if any file had it.
    pub profile: Option<String>,
    /// The endpoint (`None`: AWS itself).
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Static keys, if found (else `object_store`'s own providers).
    pub access_key_id: Option<String>,
    /// The secret key (never shown by `Debug`).
    pub secret_access_key: Option<String>,
    /// A session token (never shown by `Debug`).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |v: &Option<String>| v.as_ref().map(|_| env_spec::redact::MASK);
        f.debug_struct("AwsConfig")
            .field("profile", &self.profile)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &masked(&self.secret_access_key))
            .field("session_token", &masked(&self.session_token))
            .finish()
    }
}

impl AwsConfig {
    /// Reads the process environment and the shared files.
    pub fn from_env() -> Result<Self, SourceError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get` (an environment) and the shared files it names.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, SourceError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let named = get(AwsVars::AWS_PROFILE).or_else(|| get("AWS_DEFAULT_PROFILE"));
        let home = get("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            get(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let credentials_file = file(AwsVars::AWS_SHARED_CREDENTIALS_FILE, "credentials");
        let config_file = file(AwsVars::AWS_CONFIG_FILE, "config");
        let profile_name = named.clone().unwrap_or_else(|| "default".to_string());
        let from_credentials = credentials_file
            .as_deref()
            .map(|path| read_profile(path, &profile_name, false))
            .transpose()?
            .flatten();
        let from_config = config_file
            .as_deref()
            .map(|path| read_profile(path, &profile_name, true))
            .transpose()?
            .flatten();
        if from_credentials.is_none() && from_config.is_none() && named.is_some() {
            return Err(SourceError::AwsProfileNotFound {
                profile: profile_name,
                files: [credentials_file, config_file]
                    .into_iter()
                    .flatten()
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(" and "),
            });
        }
        let found = from_credentials.is_some() || from_config.is_some();
        // The credentials file wins over the config file, key by key (botocore).
        let mut profile = from_config.unwrap_or_default();
        profile.extend(from_credentials.unwrap_or_default());
        let key = |name: &str| profile.get(name).cloned().filter(|v| !v.is_empty());

        let env_keys = get(AwsVars::AWS_ACCESS_KEY_ID).zip(get(AwsVars::AWS_SECRET_ACCESS_KEY));
        let (access_key_id, secret_access_key, session_token) = match env_keys {
            Some((id, secret)) => (Some(id), Some(secret), get(AwsVars::AWS_SESSION_TOKEN)),
            None => match key("aws_access_key_id").zip(key("aws_secret_access_key")) {
                Some((id, secret)) => (Some(id), Some(secret), key("aws_session_token")),
                None => {
                    if let Some(setting) = [
                        "role_arn",
                        "sso_session",
                        "sso_start_url",
                        "credential_process",
                        "web_identity_token_file",
                    ]
                    .into_iter()
                    .find(|k| profile.contains_key(*k))
                    {
                        return Err(SourceError::AwsProfileUnsupported {
                            profile: profile_name,
                            setting: setting.to_string(),
                        });
                    }
                    (None, None, None)
                }
            },
        };
        for secret in [&secret_access_key, &session_token].into_iter().flatten() {
            env_spec::redact::register_secret(secret);
        }
        let endpoint = get(MLFLOW_S3_ENDPOINT_URL)
            .or_else(|| get(AwsVars::AWS_ENDPOINT_URL_S3))
            .or_else(|| get(AwsVars::AWS_ENDPOINT_URL))
            .or_else(|| get("AWS_ENDPOINT"))
            .or_else(|| key("s3.endpoint_url"))
            .or_else(|| key("endpoint_url"));
        let region = get(AwsVars::AWS_REGION)
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .or_else(|| key("region"))
            .unwrap_or_else(|| "us-east-1".to_string());
        Ok(Self {
            profile: found.then_some(profile_name),
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
        })
    }

    /// An `object_store` client for `bucket` with these settings (plus any other `AWS_*`
    /// variable `object_store` reads itself).
    pub fn store(&self, bucket: &str) -> Result<AmazonS3, SourceError> {
        self.builder(bucket).build().map_err(|source| {
            SourceError::object_store(format!("Connecting to bucket `{bucket}`"), source)
        })
    }

    /// The configured, not yet built client for `bucket`: the model-URI downloads and the
    /// remote environment cache (`env-remote`) connect the same way, from the same settings.
    #[must_use]
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&self.region);
        if let Some(endpoint) = &self.endpoint {
            // S3-compatible stores (MinIO, SeaweedFS) want path-style requests; plain HTTP is
            // allowed only when the endpoint says so.
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = &self.session_token {
                builder = builder.with_token(token);
            }
        }
        builder
    }
}

/// An `object_store` client for `s3://bucket/...` configured from the environment and the
/// AWS profile (see the module docs). Public so other `s3://` users (the remote environment
/// cache) resolve credentials the same way.
pub fn s3_store(bucket: &str) -> Result<AmazonS3, SourceError> {
    AwsConfig::from_env()?.store(bucket)
}

/// The configured, not yet built client for `bucket` (environment and AWS profile, as
/// [`s3_store`]), for users that add settings of their own (the remote environment cache's
/// timeouts and retries).
pub fn s3_builder(bucket: &str) -> Result<AmazonS3Builder, SourceError> {
    Ok(AwsConfig::from_env()?.builder(bucket))
}

/// The endpoint in use (for the cache key): `None` for AWS itself.
pub(crate) fn endpoint() -> Option<String> {
    AwsConfig::from_env().ok()?.endpoint
}

/// The keys of `[profile NAME]` (config file; `[default]` for `default`) or `[NAME]`
/// (credentials file), lower-cased; keys of a nested block (`s3 =` then indented lines) are
/// `s3.KEY`. `None` if the file or the section is missing.
fn read_profile(
    path: &Path,
    name: &str,
    config: bool,
) -> Result<Option<BTreeMap<String, String>>, SourceError> {
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SourceError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let wanted = |section: &str| {
        let section = section.trim();
        if config && name != "default" {
            section
                .strip_prefix("profile")
                .is_some_and(|rest| rest.starts_with(char::is_whitespace) && rest.trim() == name)
        } else {
            section == name
                || (config && section.strip_prefix("profile ").map(str::trim) == Some(name))
        }
    };
    let mut found: Option<BTreeMap<String, String>> = None;
    let mut inside = false;
    let mut block: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(section) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            inside = wanted(section);
            block = None;
            if inside {
                found.get_or_insert_with(BTreeMap::new);
            }
            continue;
        }
        let Some(map) = found.as_mut().filter(|_| inside) else {
            continue;
        };
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_string());
        let indented = line.starts_with(char::is_whitespace);
        match (&block, indented) {
            (Some(parent), true) => {
                map.insert(format!("{parent}.{key}"), value);
            }
            _ if value.is_empty() => block = Some(key),
            _ => {
                block = None;
                map.insert(key, value);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(files: &[(&str, &str)], env: &[(&str, &str)]) -> Result<AwsConfig, SourceError> {
        let home = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(home.path().join(".aws")).unwrap();
        for (name, text) in files {
            fs_err::write(home.path().join(".aws").join(name), text).unwrap();
        }
        let home_dir = home.path().to_string_lossy().into_owned();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .chain([("HOME".to_string(), home_dir)])
            .collect();
        AwsConfig::from_vars(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = default-secret\n\n[team]\n# a comment\naws_access_key_id=AKTEAM\naws_secret_access_key = team-secret\naws_session_token = team-token\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n\n[profile team]\nregion = eu-central-1\nendpoint_url = http://team.example:9000\n\n[profile nested]\naws_access_key_id = AKNESTED\naws_secret_access_key = nested-secret\nservices = x\ns3 =\n  endpoint_url = http://s3-only.example\n  addressing_style = path\nregion = ap-south-1\n\n[profile role]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n";

    #[test]
    fn profiles_give_keys_region_and_endpoint() {
        let default = config(&[("credentials", CREDENTIALS), ("config", CONFIG)], &[]).unwrap();
        assert_eq!(default.profile.as_deref(), Some("default"));
        assert_eq!(default.access_key_id.as_deref(), Some("AKDEFAULT"));
        assert_eq!(default.region, "eu-west-1");
        assert_eq!(default.endpoint, None);

        let team = config(
            &[("credentials", CREDENTIALS), ("config", CONFIG)],
            &[("AWS_PROFILE", "team")],
        )
        .unwrap();
        assert_eq!(team.access_key_id.as_deref(), Some("AKTEAM"));
        assert_eq!(team.secret_access_key.as_deref(), Some("team-secret"));
        assert_eq!(team.session_token.as_deref(), Some("team-token"));
        assert_eq!(team.region, "eu-central-1");
        assert_eq!(team.endpoint.as_deref(), Some("http://team.example:9000"));
        assert!(!format!("{team:?}").contains("team-secret"));

        let nested = config(&[("config", CONFIG)], &[("AWS_PROFILE", "nested")]).unwrap();
        assert_eq!(nested.access_key_id.as_deref(), Some("AKNESTED"));
        assert_eq!(nested.endpoint.as_deref(), Some("http://s3-only.example"));
        assert_eq!(nested.region, "ap-south-1");
    }

    #[test]
    fn environment_wins_over_the_profile() {
        let team = config(
            &[("credentials", CREDENTIALS), ("config", CONFIG)],
            &[
                ("AWS_PROFILE", "team"),
                ("AWS_ACCESS_KEY_ID", "AKENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_REGION", "us-west-2"),
                ("AWS_ENDPOINT_URL", "http://env.example"),
            ],
        )
        .unwrap();
        assert_eq!(team.access_key_id.as_deref(), Some("AKENV"));
        assert_eq!(team.session_token, None);
        assert_eq!(team.region, "us-west-2");
        assert_eq!(team.endpoint.as_deref(), Some("http://env.example"));
        // MLflow hands its endpoint to boto3 explicitly: it beats every other setting.
        let mlflow = config(
            &[("config", CONFIG)],
            &[
                ("AWS_PROFILE", "team"),
                ("AWS_ENDPOINT_URL", "http://env.example"),
                ("MLFLOW_S3_ENDPOINT_URL", "http://mlflow.example"),
            ],
        )
        .unwrap();
        assert_eq!(mlflow.endpoint.as_deref(), Some("http://mlflow.example"));
    }

    #[test]
    fn missing_and_unsupported_profiles_are_errors() {
        let none = config(&[], &[]).unwrap();
        assert_eq!(none.profile, None);
        assert_eq!(none.access_key_id, None);
        assert_eq!(none.region, "us-east-1");
        let missing =
            config(&[("credentials", CREDENTIALS)], &[("AWS_PROFILE", "nope")]).unwrap_err();
        assert!(
            matches!(&missing, SourceError::AwsProfileNotFound { profile, .. } if profile == "nope"),
            "{missing:?}"
        );
        let role = config(&[("config", CONFIG)], &[("AWS_PROFILE", "role")]).unwrap_err();
        assert!(
            matches!(&role, SourceError::AwsProfileUnsupported { setting, .. } if setting == "role_arn"),
            "{role:?}"
        );
    }
}
