//! The OCI distribution API, the small part an image writer needs, on the workspace's reqwest:
//! `GET` manifests and blobs, `HEAD` blobs, `POST`+`PUT` blob uploads (and cross-repository
//! mounts), `PUT` manifests; Basic auth and the token flow (`WWW-Authenticate: Bearer`).
//!
//! Why not `oci-client` (0.18): it shares the workspace's reqwest 0.13, but brings `oci-spec`
//! (with the `derive_builder`, `getset` and `strum` proc macros), `chrono`, `http-auth`,
//! `olpc-cjson` and a second `sha2` for the few requests used here, and its push API hides
//! what this module reports per blob: uploaded, already present, or mounted from the base's
//! repository (what `image --json` prints and the tests count).
//!
//! Plain HTTP is used for `localhost` and 127.0.0.0/8 (as Docker does) and for hosts named with
//! `--insecure-registry`; everything else is HTTPS.

use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;

use crate::reference::Reference;
use crate::{ImageError, io};

/// Accepted manifest media types, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A username and password for a registry.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl Credentials {
    /// The credentials of a user name and a password given together, `None` when neither is:
    /// one without the other is refused, where it used to be dropped without a word (the
    /// registry then refused the push with its own message).
    ///
    /// # Errors
    /// [`ImageError::HalfCredentials`].
    pub fn pair(
        username: Option<String>,
        password: Option<String>,
    ) -> Result<Option<Self>, crate::ImageError> {
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some(Self { username, password })),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(crate::ImageError::HalfCredentials {
                given: "password",
                missing: "user name",
            }),
            (Some(_), None) => Err(crate::ImageError::HalfCredentials {
                given: "user name",
                missing: "password",
            }),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ****)", self.username)
    }
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Hosts (`host` or `host:port`) to reach over plain HTTP besides loopback.
    pub insecure: Vec<String>,
    /// Explicit credentials (flags or variables), used for every registry.
    pub credentials: Option<Credentials>,
    /// Auth files to read, in order (`REGISTRY_AUTH_FILE`, podman's, Docker's).
    pub auth_files: Vec<std::path::PathBuf>,
}

/// A client for one repository of one registry.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The repository.
    pub reference: Reference,
    credentials: Option<Credentials>,
    token: Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl Client {
    /// A client for `reference`'s repository.
    pub fn new(reference: &Reference, settings: &RegistrySettings) -> Result<Self, ImageError> {
        let insecure = reference.is_loopback()
            || settings
                .insecure
                .iter()
                .any(|h| h == &reference.registry || h == reference.host_only());
        let scheme = if insecure { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .user_agent(concat!("pyfunc-env/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|source| ImageError::Http {
                registry: reference.registry.clone(),
                source,
            })?;
        let credentials = settings
            .credentials
            .clone()
            .or_else(|| credentials_from_files(&settings.auth_files, &reference.registry));
        Ok(Self {
            http,
            base: format!("{scheme}://{}/v2", reference.api_host()),
            reference: reference.clone(),
            credentials,
            token: Mutex::new(None),
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/{}/{tail}", self.base, self.reference.repository)
    }

    fn network_error(&self, source: reqwest::Error) -> ImageError {
        ImageError::Unreachable {
            registry: self.reference.registry.clone(),
            source,
        }
    }

    /// Sends the request `make` builds, authenticating once on a 401.
    async fn send(
        &self,
        make: impl Fn() -> Result<reqwest::RequestBuilder, ImageError>,
    ) -> Result<reqwest::Response, ImageError> {
        let authorize = |builder: reqwest::RequestBuilder| {
            // The token is only ever replaced whole; a poisoned lock still holds a valid value.
            let token = self
                .token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            match (token, &self.credentials) {
                (Some(token), _) => builder.bearer_auth(token),
                (None, Some(c)) => builder.basic_auth(&c.username, Some(&c.password)),
                (None, None) => builder,
            }
        };
        let response = authorize(make()?)
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if let Some(params) = challenge.strip_prefix("Bearer ") {
            self.fetch_token(params).await?;
            let response = authorize(make()?)
                .send()
                .await
                .map_err(|e| self.network_error(e))?;
            if response.status() != reqwest::StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
        }
        Err(ImageError::Unauthorized {
            registry: self.reference.registry.clone(),
            had_credentials: self.credentials.is_some(),
        })
    }

    async fn fetch_token(&self, params: &str) -> Result<(), ImageError> {
        let mut realm = None;
        let mut query = Vec::new();
        for part in split_params(params) {
            if let Some((key, value)) = part.split_once('=') {
                let value = value.trim_matches('"').to_string();
                if key.trim() == "realm" {
                    realm = Some(value);
                } else {
                    query.push((key.trim().to_string(), value));
                }
            }
        }
        let Some(realm) = realm else {
            return Err(ImageError::Unauthorized {
                registry: self.reference.registry.clone(),
                had_credentials: self.credentials.is_some(),
            });
        };
        if !query.iter().any(|(k, _)| k == "scope") {
            query.push((
                "scope".into(),
                format!("repository:{}:pull,push", self.reference.repository),
            ));
        }
        let mut request = self.http.get(&realm).query(&query);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| self.network_error(e))?;
        if !response.status().is_success() {
            return Err(ImageError::Unauthorized {
                registry: self.reference.registry.clone(),
                had_credentials: self.credentials.is_some(),
            });
        }
        let body: TokenResponse = response.json().await.map_err(|e| self.network_error(e))?;
        let token = body.token.or(body.access_token).unwrap_or_default();
        *self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
        Ok(())
    }

    async fn refused(&self, what: &str, response: reqwest::Response) -> ImageError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        ImageError::Refused {
            registry: self.reference.registry.clone(),
            what: what.to_string(),
            status,
            body: body.chars().take(400).collect(),
        }
    }

    /// Checks that the registry answers and accepts the credentials (`GET /v2/`, through the
    /// same authentication as every request): a registry that is down or refuses access fails
    /// here, before anything is built.
    pub async fn ping(&self) -> Result<(), ImageError> {
        let url = format!("{}/", self.base);
        self.send(|| Ok(self.http.get(&url))).await?;
        Ok(())
    }

    /// `GET` a manifest: its bytes and media type.
    pub async fn manifest(&self, version: &str) -> Result<(Vec<u8>, String), ImageError> {
        let url = self.url(&format!("manifests/{version}"));
        let response = self
            .send(|| {
                Ok(self
                    .http
                    .get(&url)
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if !response.status().is_success() {
            return Err(self
                .refused(&format!("the manifest `{version}`"), response)
                .await);
        }
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response.bytes().await.map_err(|e| self.network_error(e))?;
        Ok((bytes.to_vec(), media_type))
    }

    /// `GET` a blob into memory (configs).
    pub async fn blob_bytes(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let url = self.url(&format!("blobs/{digest}"));
        let response = self.send(|| Ok(self.http.get(&url))).await?;
        if !response.status().is_success() {
            return Err(self
                .refused(&format!("the blob `{digest}`"), response)
                .await);
        }
        let bytes = response.bytes().await.map_err(|e| self.network_error(e))?;
        Ok(bytes.to_vec())
    }

    /// `GET` a blob into `file`.
    pub async fn blob_to_file(&self, digest: &str, file: &Path) -> Result<(), ImageError> {
        use std::io::Write as _;
        let url = self.url(&format!("blobs/{digest}"));
        let mut response = self.send(|| Ok(self.http.get(&url))).await?;
        if !response.status().is_success() {
            return Err(self
                .refused(&format!("the blob `{digest}`"), response)
                .await);
        }
        let mut out = fs_err::File::create(file).map_err(io(file))?;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.network_error(e))? {
            out.write_all(&chunk).map_err(io(file))?;
        }
        out.flush().map_err(io(file))?;
        Ok(())
    }

    /// Whether the repository has the blob.
    pub async fn has_blob(&self, digest: &str) -> Result<bool, ImageError> {
        let url = self.url(&format!("blobs/{digest}"));
        let response = self.send(|| Ok(self.http.head(&url))).await?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self
                .refused(&format!("the blob `{digest}`"), response)
                .await),
        }
    }

    /// Asks the registry to mount `digest` from `from` (another repository of it); true when
    /// it did.
    pub async fn mount(&self, digest: &str, from: &str) -> Result<bool, ImageError> {
        let url = self.url("blobs/uploads/");
        let response = self
            .send(|| {
                Ok(self
                    .http
                    .post(&url)
                    .query(&[("mount", digest), ("from", from)])
                    .header(reqwest::header::CONTENT_LENGTH, 0))
            })
            .await?;
        Ok(response.status().as_u16() == 201)
    }

    /// Uploads the blob in `file` (one `POST`, one `PUT`).
    pub async fn upload(&self, digest: &str, file: &Path, size: u64) -> Result<(), ImageError> {
        let url = self.url("blobs/uploads/");
        let response = self
            .send(|| {
                Ok(self
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_LENGTH, 0))
            })
            .await?;
        if response.status().as_u16() != 202 {
            return Err(self
                .refused(&format!("an upload of `{digest}`"), response)
                .await);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let location = reqwest::Url::parse(&url)
            .and_then(|base| base.join(&location))
            .map_err(|_| ImageError::Refused {
                registry: self.reference.registry.clone(),
                what: format!("an upload of `{digest}`"),
                status: 202,
                body: format!("invalid Location `{location}`"),
            })?;
        let response = self
            .send(|| {
                let mut url = location.clone();
                url.query_pairs_mut().append_pair("digest", digest);
                let std_file = fs_err::File::open(file).map_err(io(file))?.into_file();
                let body = reqwest::Body::from(tokio::fs::File::from_std(std_file));
                Ok(self
                    .http
                    .put(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(body))
            })
            .await?;
        if response.status().as_u16() != 201 {
            return Err(self
                .refused(&format!("the upload of `{digest}`"), response)
                .await);
        }
        Ok(())
    }

    /// `PUT` a manifest under `tag`.
    pub async fn put_manifest(
        &self,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), ImageError> {
        let url = self.url(&format!("manifests/{tag}"));
        let response = self
            .send(|| {
                Ok(self
                    .http
                    .put(&url)
                    .header(reqwest::header::CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })
            .await?;
        if response.status().as_u16() != 201 {
            return Err(self.refused("the manifest", response).await);
        }
        Ok(())
    }
}

/// Splits `a="x,y",b="z"` at the commas outside quotes.
fn split_params(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Credentials for `registry` from the first auth file that has any, as Docker and podman
/// read them: a credential helper named for the registry (`credHelpers`), else an `auths`
/// entry, else the file's default helper (`credsStore`). A helper is the program
/// `docker-credential-NAME` on `PATH`, run with `get` and the server on stdin.
fn credentials_from_files(files: &[std::path::PathBuf], registry: &str) -> Option<Credentials> {
    let names = if registry == "docker.io" {
        vec![
            registry.to_string(),
            "https://index.docker.io/v1/".to_string(),
            "index.docker.io".to_string(),
        ]
    } else {
        vec![registry.to_string(), format!("https://{registry}")]
    };
    // What Docker's helpers are asked for: the registry's name, or Docker Hub's v1 address.
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    for file in files {
        let Ok(text) = fs_err::read_to_string(file) else {
            continue;
        };
        let Ok(document) = serde_json::from_str::<serde_json::Value>(&text) else {
            tracing::debug!("Ignoring `{}`: not JSON", file.display());
            continue;
        };
        if let Some(helper) = names
            .iter()
            .find_map(|name| document["credHelpers"][name].as_str())
        {
            tracing::debug!(
                "Credentials for `{registry}` from the helper `{helper}` (`{}`)",
                file.display()
            );
            return credential_helper(helper, server);
        }
        for name in &names {
            let Some(auth) = document["auths"][name]["auth"].as_str() else {
                continue;
            };
            let decoded = base64_decode(auth)?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (username, password) = decoded.split_once(':')?;
            tracing::debug!("Credentials for `{registry}` from `{}`", file.display());
            return Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        if let Some(helper) = document["credsStore"].as_str().filter(|h| !h.is_empty()) {
            tracing::debug!(
                "Credentials for `{registry}` from the default helper `{helper}` (`{}`)",
                file.display()
            );
            return credential_helper(helper, server);
        }
    }
    None
}

/// Asks `docker-credential-NAME get` for `server`'s credentials (the protocol of
/// docker/docker-credential-helpers: the server on stdin, `{"Username", "Secret"}` on stdout;
/// a failure means it has none).
fn credential_helper(name: &str, server: &str) -> Option<Credentials> {
    use std::io::Write as _;
    if name.contains('/') {
        tracing::debug!("Ignoring the credential helper `{name}`: not a plain name");
        return None;
    }
    let program = format!("docker-credential-{name}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| tracing::debug!("Failed to run `{program}`: {e}"))
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| tracing::debug!("Failed to run `{program}`: {e}"))
        .ok()?;
    if !output.status.success() {
        tracing::debug!(
            "`{program} get` has no credentials for `{server}`: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        );
        return None;
    }
    helper_answer(&output.stdout)
}

/// The credentials in a helper's answer; `None` for an identity token (`<token>`), which needs
/// OAuth, not basic authentication.
fn helper_answer(stdout: &[u8]) -> Option<Credentials> {
    let answer: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    let username = answer["Username"].as_str()?;
    let secret = answer["Secret"].as_str()?;
    if username == "<token>" {
        tracing::debug!("The credential helper gave an identity token, which is not supported");
        return None;
    }
    Some(Credentials {
        username: username.to_string(),
        password: secret.to_string(),
    })
}

/// Standard base64 (padding optional).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.trim().bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    /// Both or neither: a password alone (or a user name alone) is the caller's to fix.
    #[test]
    fn credentials_come_in_pairs() {
        let some = |text: &str| Some(text.to_string());
        let pair = Credentials::pair(some("me"), some("secret"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (pair.username.as_str(), pair.password.as_str()),
            ("me", "secret")
        );
        assert!(Credentials::pair(None, None).unwrap().is_none());
        for (username, password, message) in [
            (
                None,
                some("secret"),
                "A registry password was given without a user name",
            ),
            (
                some("me"),
                None,
                "A registry user name was given without a password",
            ),
        ] {
            let error = Credentials::pair(username, password).unwrap_err();
            assert_eq!(error.to_string(), message);
            assert!(error.is_user_error());
        }
    }
    use super::*;

    #[test]
    fn auth_files() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        fs_err::write(
            &file,
            r#"{"auths": {"reg.example:5000": {"auth": "dXNlcjpwYXNz"}}}"#,
        )
        .unwrap();
        let found = credentials_from_files(
            &[dir.path().join("missing"), file.clone()],
            "reg.example:5000",
        )
        .unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("user", "pass")
        );
        assert!(credentials_from_files(&[file], "other.example").is_none());
    }

    #[test]
    fn credential_helper_answers() {
        let found =
            helper_answer(br#"{"ServerURL":"reg.example","Username":"me","Secret":"s3"}"#).unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("me", "s3")
        );
        assert!(helper_answer(br#"{"Username":"<token>","Secret":"refresh"}"#).is_none());
        assert!(helper_answer(b"credentials not found in native keychain").is_none());
        // A helper that is not installed gives nothing (the registry then says how to log in).
        assert!(credential_helper("pyfunc-env-test-no-such-helper", "reg.example").is_none());
        assert!(credential_helper("../escape", "reg.example").is_none());
    }

    #[test]
    fn challenge_params() {
        assert_eq!(
            split_params(
                r#"realm="https://auth/token",service="reg",scope="repository:a/b:pull,push""#
            ),
            [
                r#"realm="https://auth/token""#,
                r#"service="reg""#,
                r#"scope="repository:a/b:pull,push""#
            ]
        );
    }
}
