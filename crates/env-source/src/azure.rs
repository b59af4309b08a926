//! Azure storage URIs through `object_store`, read the way MLflow's artifact repositories read
//! them.
//!
//! - `wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH` (`AzureBlobArtifactRepository`;
//!   also `.blob.core.chinacloudapi.cn`). MLflow's credentials, in its order:
//!   `AZURE_STORAGE_CONNECTION_STRING` (whose account and endpoint are then used, as
//!   `BlobServiceClient.from_connection_string` does), else `AZURE_STORAGE_ACCESS_KEY` for the
//!   URI's account, else `DefaultAzureCredential`, whose chain maps to `object_store`'s:
//!   `AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/`AZURE_TENANT_ID`, a federated token
//!   (`AZURE_FEDERATED_TOKEN_FILE`), managed identity, or the Azure CLI
//!   (`AZURE_USE_AZURE_CLI=true`).
//! - `abfss://FILESYSTEM@ACCOUNT.dfs.core.windows.net/PATH` (`AzureDataLakeArtifactRepository`):
//!   a Data Lake Gen2 file system is a blob container of the same account, so it is read
//!   through the Blob API at `ACCOUNT.blob.core.windows.net`, with the same credentials.
//!
//! `wasb://` and `abfs://` (no TLS) have no MLflow repository and are refused by the parser.
//! The connection string is parsed here (`object_store` does not): `AccountName`, `AccountKey`,
//! `SharedAccessSignature`, `BlobEndpoint`, `DefaultEndpointsProtocol`, `EndpointSuffix` and
//! `UseDevelopmentStorage=true` (Azurite at `AZURITE_BLOB_STORAGE_URL`, else
//! `http://127.0.0.1:10000`). Keys, SAS tokens and connection strings are registered with
//! [`env_spec::redact`] before anything can print them.

use std::collections::BTreeMap;

use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};

use crate::SourceError;
use crate::error::Service;

/// The variables read for Azure storage, as MLflow names them (documented in the CLI's help).
pub struct AzureVars;

impl AzureVars {
    /// A storage account connection string (wins over everything else, as in MLflow).
    pub const AZURE_STORAGE_CONNECTION_STRING: &'static str = "AZURE_STORAGE_CONNECTION_STRING";
    /// The account key of the URI's storage account.
    pub const AZURE_STORAGE_ACCESS_KEY: &'static str = "AZURE_STORAGE_ACCESS_KEY";
}

/// Which MLflow repository a URI belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureService {
    /// `wasbs://`: Blob Storage.
    Blob,
    /// `abfss://`: Data Lake Storage Gen2.
    DataLake,
}

/// `wasbs://CONTAINER@ACCOUNT.SUFFIX/PATH` or `abfss://FILESYSTEM@ACCOUNT.dfs.core.windows.net/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureUri {
    /// The repository.
    pub service: AzureService,
    /// The container (a Data Lake file system is one).
    pub container: String,
    /// The storage account.
    pub account: String,
    /// The host after the account: `blob.core.windows.net`, `blob.core.chinacloudapi.cn` or
    /// `dfs.core.windows.net`.
    pub suffix: String,
    /// The blob name prefix (no leading or trailing `/`).
    pub prefix: String,
}

const WASBS_FORM: &str = "Azure Blob URIs look like `wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/path/to/model` (or `.blob.core.chinacloudapi.cn`)";
const ABFSS_FORM: &str = "Azure Data Lake URIs look like `abfss://FILESYSTEM@ACCOUNT.dfs.core.windows.net/path/to/model`";

impl AzureUri {
    /// Parses `wasbs://` (`parse_wasbs_uri`) or `abfss://` (`_parse_abfss_uri`) as MLflow does.
    pub fn parse(text: &str, service: AzureService) -> Result<Self, SourceError> {
        let (scheme, form) = match service {
            AzureService::Blob => ("wasbs://", WASBS_FORM),
            AzureService::DataLake => ("abfss://", ABFSS_FORM),
        };
        let invalid = || SourceError::InvalidUri {
            uri: env_spec::redact::redact_url(text),
            form,
        };
        let body = text
            .get(scheme.len()..)
            .filter(|_| text[..scheme.len()].eq_ignore_ascii_case(scheme))
            .ok_or_else(invalid)?;
        let (netloc, path) = body.split_once('/').unwrap_or((body, ""));
        let (container, host) = netloc.rsplit_once('@').ok_or_else(invalid)?;
        let (account, suffix) = host.split_once('.').ok_or_else(invalid)?;
        let suffix_ok = match service {
            AzureService::Blob => {
                suffix == "blob.core.windows.net" || suffix == "blob.core.chinacloudapi.cn"
            }
            AzureService::DataLake => suffix == "dfs.core.windows.net",
        };
        if container.is_empty() || account.is_empty() || !suffix_ok {
            return Err(invalid());
        }
        Ok(Self {
            service,
            container: container.to_string(),
            account: account.to_string(),
            suffix: suffix.to_string(),
            prefix: path.trim_matches('/').to_string(),
        })
    }

    /// `wasbs://CONTAINER@ACCOUNT.SUFFIX`, for messages.
    #[must_use]
    pub fn root(&self) -> String {
        let scheme = match self.service {
            AzureService::Blob => "wasbs",
            AzureService::DataLake => "abfss",
        };
        format!(
            "{scheme}://{}@{}.{}",
            self.container, self.account, self.suffix
        )
    }

    /// The Blob service endpoint of the URI's account (Data Lake accounts serve the Blob API
    /// too, under `blob.` instead of `dfs.`).
    #[must_use]
    pub fn blob_endpoint(&self) -> String {
        let suffix = self.suffix.replacen("dfs.", "blob.", 1);
        format!("https://{}.{suffix}", self.account)
    }
}

/// How requests are signed.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureAuth {
    /// An account key (shared key signing).
    AccessKey(String),
    /// A SAS token (its query string).
    Sas(String),
    /// `object_store`'s chain for `DefaultAzureCredential`: service principal, federated
    /// token, Azure CLI, managed identity (`AZURE_*` variables).
    Default,
    /// Azurite's well-known development account.
    DevelopmentStorage,
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccessKey(_) => write!(f, "AccessKey({})", env_spec::redact::MASK),
            Self::Sas(_) => write!(f, "Sas({})", env_spec::redact::MASK),
            Self::Default => f.write_str("Default"),
            Self::DevelopmentStorage => f.write_str("DevelopmentStorage"),
        }
    }
}

/// Where requests for one URI go and how they are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConfig {
    /// The storage account.
    pub account: String,
    /// The container.
    pub container: String,
    /// The Blob service URL (path-style for Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
    pub endpoint: String,
    /// The signing.
    pub auth: AzureAuth,
    /// Which setting decided it (for messages): `AZURE_STORAGE_CONNECTION_STRING`, ...
    pub from: &'static str,
}

impl AzureConfig {
    /// Reads the process environment for `uri`.
    pub fn from_env(uri: &AzureUri) -> Result<Self, SourceError> {
        Self::from_vars(uri, |name| std::env::var(name).ok())
    }

    /// Reads the settings through `get` for `uri`.
    pub fn from_vars(
        uri: &AzureUri,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SourceError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if let Some(text) = get(AzureVars::AZURE_STORAGE_CONNECTION_STRING) {
            env_spec::redact::register_secret(&text);
            return from_connection_string(uri, &text, get("AZURITE_BLOB_STORAGE_URL"));
        }
        if let Some(key) = get(AzureVars::AZURE_STORAGE_ACCESS_KEY) {
            env_spec::redact::register_secret(&key);
            return Ok(Self {
                account: uri.account.clone(),
                container: uri.container.clone(),
                endpoint: uri.blob_endpoint(),
                auth: AzureAuth::AccessKey(key),
                from: AzureVars::AZURE_STORAGE_ACCESS_KEY,
            });
        }
        // object_store reads these itself; registered so no message shows them.
        for name in [
            "AZURE_CLIENT_SECRET",
            "AZURE_STORAGE_CLIENT_SECRET",
            "AZURE_STORAGE_SAS_KEY",
            "AZURE_STORAGE_SAS_TOKEN",
            "AZURE_STORAGE_TOKEN",
            "AZURE_STORAGE_ACCOUNT_KEY",
        ] {
            if let Some(secret) = get(name) {
                env_spec::redact::register_secret(&secret);
            }
        }
        Ok(Self {
            account: uri.account.clone(),
            container: uri.container.clone(),
            endpoint: uri.blob_endpoint(),
            auth: AzureAuth::Default,
            from: "DefaultAzureCredential",
        })
    }

    /// The configured, not yet built client.
    #[must_use]
    pub fn builder(&self) -> MicrosoftAzureBuilder {
        let base = match self.auth {
            // The service principal, federated token, CLI and managed identity settings
            // are `object_store`'s own `AZURE_*` variables.
            AzureAuth::Default => MicrosoftAzureBuilder::from_env(),
            _ => MicrosoftAzureBuilder::new(),
        };
        let builder = base
            .with_account(&self.account)
            .with_container_name(&self.container)
            .with_endpoint(self.endpoint.clone())
            .with_allow_http(self.endpoint.starts_with("http://"));
        match &self.auth {
            AzureAuth::AccessKey(key) => builder.with_access_key(key),
            AzureAuth::Sas(token) => builder.with_sas_authorization(sas_pairs(token)),
            AzureAuth::DevelopmentStorage => builder.with_access_key(DEVELOPMENT_KEY),
            AzureAuth::Default => builder,
        }
    }

    /// A client for the container.
    pub fn store(&self) -> Result<MicrosoftAzure, SourceError> {
        self.builder().build().map_err(|source| {
            SourceError::object_store_in(
                Service::Azure,
                format!(
                    "Connecting to container `{}` of account `{}`",
                    self.container, self.account
                ),
                source,
            )
        })
    }
}

/// Azurite's documented development account key (public, not a secret).
const DEVELOPMENT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEVELOPMENT_ACCOUNT: &str = "devstoreaccount1";

fn from_connection_string(
    uri: &AzureUri,
    text: &str,
    azurite_url: Option<String>,
) -> Result<AzureConfig, SourceError> {
    let invalid = |problem: &'static str| SourceError::InvalidSetting {
        name: AzureVars::AZURE_STORAGE_CONNECTION_STRING,
        value: env_spec::redact::MASK.to_string(),
        expected: problem,
    };
    // `Key=Value;...`, keys case-insensitive; a value may contain `=` (base64 keys do).
    let mut fields = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            invalid("`Key=Value` pairs separated by `;` (as the Azure portal shows it)")
        })?;
        fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    for secret in ["accountkey", "sharedaccesssignature"] {
        if let Some(value) = fields.get(secret) {
            env_spec::redact::register_secret(value);
        }
    }
    let from = AzureVars::AZURE_STORAGE_CONNECTION_STRING;
    if fields
        .get("usedevelopmentstorage")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        let base = fields
            .get("developmentstorageproxyuri")
            .cloned()
            .or(azurite_url)
            .unwrap_or_else(|| "http://127.0.0.1:10000".to_string());
        return Ok(AzureConfig {
            account: DEVELOPMENT_ACCOUNT.to_string(),
            container: uri.container.clone(),
            endpoint: format!("{}/{DEVELOPMENT_ACCOUNT}", base.trim_end_matches('/')),
            auth: AzureAuth::DevelopmentStorage,
            from,
        });
    }
    let protocol = fields
        .get("defaultendpointsprotocol")
        .map_or("https", String::as_str);
    let suffix = fields
        .get("endpointsuffix")
        .map_or("core.windows.net", String::as_str);
    let endpoint = fields.get("blobendpoint").cloned();
    // The account: named, else the first label of the blob endpoint's host.
    let account = match fields.get("accountname") {
        Some(name) => name.clone(),
        None => endpoint
            .as_deref()
            .and_then(|e| url::Url::parse(e).ok())
            .and_then(|u| {
                u.host_str()
                    .map(|h| h.split('.').next().unwrap_or(h).to_string())
            })
            .ok_or_else(|| invalid("an `AccountName=` or a `BlobEndpoint=`"))?,
    };
    let endpoint = endpoint.map_or_else(
        || format!("{protocol}://{account}.blob.{suffix}"),
        |e| e.trim_end_matches('/').to_string(),
    );
    let auth = match (
        fields.get("accountkey"),
        fields.get("sharedaccesssignature"),
    ) {
        (Some(key), _) => AzureAuth::AccessKey(key.clone()),
        (None, Some(sas)) => AzureAuth::Sas(sas.clone()),
        (None, None) => {
            return Err(invalid(
                "an `AccountKey=` or a `SharedAccessSignature=` (or `UseDevelopmentStorage=true`)",
            ));
        }
    };
    Ok(AzureConfig {
        account,
        container: uri.container.clone(),
        endpoint,
        auth,
        from,
    })
}

/// A SAS token's query pairs (`sv=...&sig=...`, with or without the leading `?`), decoded.
fn sas_pairs(token: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(token.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> AzureUri {
        let service = if text.starts_with("abfss") {
            AzureService::DataLake
        } else {
            AzureService::Blob
        };
        AzureUri::parse(text, service).unwrap()
    }

    fn config(uri: &AzureUri, env: &[(&str, &str)]) -> Result<AzureConfig, SourceError> {
        AzureConfig::from_vars(uri, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        })
    }

    #[test]
    fn uris_as_mlflow_parses_them() {
        assert_eq!(
            uri("wasbs://models@acct.blob.core.windows.net/iris/v1/"),
            AzureUri {
                service: AzureService::Blob,
                container: "models".into(),
                account: "acct".into(),
                suffix: "blob.core.windows.net".into(),
                prefix: "iris/v1".into(),
            }
        );
        let china = uri("wasbs://c@acct.blob.core.chinacloudapi.cn/p");
        assert_eq!(
            china.blob_endpoint(),
            "https://acct.blob.core.chinacloudapi.cn"
        );
        let lake = uri("abfss://fs@lake.dfs.core.windows.net/a/b");
        assert_eq!(lake.container, "fs");
        assert_eq!(lake.prefix, "a/b");
        assert_eq!(lake.blob_endpoint(), "https://lake.blob.core.windows.net");
        assert_eq!(lake.root(), "abfss://fs@lake.dfs.core.windows.net");
        for (bad, service) in [
            ("wasbs://acct.blob.core.windows.net/p", AzureService::Blob),
            ("wasbs://c@acct.dfs.core.windows.net/p", AzureService::Blob),
            ("wasbs://@acct.blob.core.windows.net/p", AzureService::Blob),
            ("wasbs://c@acct.blob.example.com/p", AzureService::Blob),
            (
                "abfss://fs@lake.blob.core.windows.net/p",
                AzureService::DataLake,
            ),
        ] {
            assert!(
                matches!(
                    AzureUri::parse(bad, service),
                    Err(SourceError::InvalidUri { .. })
                ),
                "{bad}"
            );
        }
    }

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5YWJjZGVm";

    #[test]
    fn a_connection_string_gives_account_endpoint_and_key() {
        let u = uri("wasbs://c@acct.blob.core.windows.net/p");
        let connection = format!(
            "DefaultEndpointsProtocol=https;AccountName=other;AccountKey={KEY};EndpointSuffix=core.windows.net"
        );
        let from = config(
            &u,
            &[
                ("AZURE_STORAGE_CONNECTION_STRING", &connection),
                ("AZURE_STORAGE_ACCESS_KEY", "ignored"),
            ],
        )
        .unwrap();
        // As `BlobServiceClient.from_connection_string`: the string's account, the URI's
        // container.
        assert_eq!(from.account, "other");
        assert_eq!(from.container, "c");
        assert_eq!(from.endpoint, "https://other.blob.core.windows.net");
        assert_eq!(from.auth, AzureAuth::AccessKey(KEY.into()));
        assert!(!format!("{from:?}").contains(KEY));
        assert_eq!(
            env_spec::redact::redact(&format!("signing with {KEY} failed")),
            "signing with **** failed"
        );

        let azurite = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEVELOPMENT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        );
        let local = config(&u, &[("AZURE_STORAGE_CONNECTION_STRING", &azurite)]).unwrap();
        assert_eq!(local.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(local.account, "devstoreaccount1");

        let sas = config(
            &u,
            &[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "BlobEndpoint=https://sasacct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&sig=c2lnbmF0dXJlLXZhbHVl%3D",
            )],
        )
        .unwrap();
        assert_eq!(sas.account, "sasacct");
        assert_eq!(sas.endpoint, "https://sasacct.blob.core.windows.net");
        let AzureAuth::Sas(token) = &sas.auth else {
            panic!("{sas:?}")
        };
        assert_eq!(
            sas_pairs(token),
            [
                ("sv".to_string(), "2022-11-02".to_string()),
                ("ss".to_string(), "b".to_string()),
                ("sig".to_string(), "c2lnbmF0dXJlLXZhbHVl=".to_string())
            ]
        );

        let development = config(
            &u,
            &[
                (
                    "AZURE_STORAGE_CONNECTION_STRING",
                    "UseDevelopmentStorage=true",
                ),
                ("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:4100"),
            ],
        )
        .unwrap();
        assert_eq!(
            development.endpoint,
            "http://127.0.0.1:4100/devstoreaccount1"
        );
        assert_eq!(development.auth, AzureAuth::DevelopmentStorage);

        for bad in ["AccountName=a", "garbage", "AccountKey=abc"] {
            let error = config(&u, &[("AZURE_STORAGE_CONNECTION_STRING", bad)]).unwrap_err();
            assert!(
                matches!(error, SourceError::InvalidSetting { ref value, .. } if value == "****"),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn an_access_key_then_the_default_credential() {
        let u = uri("abfss://fs@lake.dfs.core.windows.net/m");
        let key = config(&u, &[("AZURE_STORAGE_ACCESS_KEY", KEY)]).unwrap();
        assert_eq!(key.account, "lake");
        assert_eq!(key.container, "fs");
        assert_eq!(key.endpoint, "https://lake.blob.core.windows.net");
        assert_eq!(key.from, "AZURE_STORAGE_ACCESS_KEY");
        let default = config(&u, &[]).unwrap();
        assert_eq!(default.auth, AzureAuth::Default);
        // The builder takes the URI's account and container, and builds without a network.
        default.store().unwrap();
        key.store().unwrap();
    }
}
