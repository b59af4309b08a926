//! Secrets in URLs (`https://user:token@mirror/...`, anaconda.org `/t/<token>/` paths) never
//! reach output: every URL we show goes through [`redact_url`], and every message that may
//! quote a URL from another library goes through [`redact`], which also masks every secret
//! seen so far by [`register_url`].

use std::sync::{Mutex, PoisonError};

/// Every secret registered so far in this process.
///
/// A process-wide static on purpose, unlike the other state of a build (which the caller owns):
/// a secret must be masked in every line the process writes, and most of those lines are not
/// ours to pass a value to. Tracing events of rattler, reqwest, `object_store` and uv's streamed
/// output are written by the CLI's log writer ([`RedactingWriter`]) from whichever runtime worker or blocking thread
/// produced them; error chains from those libraries are rendered by the CLI long after the
/// code that learnt the secret (a mirror URL in env-build, an AWS or Azure key in env-source or
/// env-remote) returned. A registry passed by value would have to reach that log writer and
/// every renderer, and one path that missed it would print a credential. Secrets are only
/// added, never removed, and a secret is masked even if it came from an earlier model of the
/// same process (`create --from` builds many): over-masking is harmless, under-masking is not.
/// `secrets::` tests check that no credential reaches stdout, stderr or `-vv` logs.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The mask.
pub const MASK: &str = "****";

/// Remembers the secrets of a URL so [`redact`] masks them wherever they appear.
pub fn register_url(url: &str) {
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    for secret in secrets_of(url) {
        if secret.len() >= 3 && !secrets.contains(&secret) {
            secrets.push(secret);
        }
    }
}

/// Remembers a secret given on its own (a token or password from the environment) so
/// [`redact`] masks it wherever it appears.
pub fn register_secret(secret: &str) {
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    if secret.len() >= 3 && !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
    }
}

fn secrets_of(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(password) = parsed.password() {
            out.push(password.to_string());
            if let Ok(decoded) = percent_decode(password) {
                out.push(decoded);
            }
        }
        if parsed.username().len() >= 12
            && parsed.password().is_none()
            && !names_container(parsed.scheme())
        {
            // `https://TOKEN@host/...` carries the secret in the user name (short names such as
            // `git@` are not secrets, and masking them everywhere would mangle messages).
            out.push(parsed.username().to_string());
        }
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(Iterator::collect)
            .unwrap_or_default();
        for pair in segments.windows(2) {
            if pair[0] == "t" && !pair[1].is_empty() {
                out.push(pair[1].to_string());
            }
        }
        for (name, value) in parsed.query_pairs() {
            // `sig`: the signature of an Azure SAS token, the part that grants access.
            if [
                "token",
                "access_token",
                "api_key",
                "apikey",
                "password",
                "sig",
            ]
            .contains(&name.as_ref())
            {
                out.push(value.into_owned());
            }
        }
    }
    out
}

/// Azure's `wasbs://CONTAINER@ACCOUNT...` and `abfss://FILESYSTEM@ACCOUNT...` put a container
/// name, not a credential, before the `@`.
fn names_container(scheme: &str) -> bool {
    ["wasbs", "wasb", "abfss", "abfs"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

/// A URL with its secrets masked: `https://user:****@host/t/****/conda-forge`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let mut text = url.to_string();
    for secret in secrets_of(url) {
        if !secret.is_empty() {
            text = text.replace(&secret, MASK);
        }
    }
    text
}

/// Masks every registered secret in `text`, and any `scheme://user:password@` it contains.
#[must_use]
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    {
        let secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
        for secret in secrets.iter() {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    mask_userinfo(&mask_assignments(&out))
}

/// Masks the values of Azure connection-string and SAS fields that grant access
/// (`AccountKey=...;`, `SharedAccessSignature=...;`, `sig=...&`) wherever they appear, whether
/// or not they were registered. Pure.
#[must_use]
pub fn mask_assignments(text: &str) -> String {
    let mut out = text.to_string();
    // A connection-string field ends at `;`; a SAS token inside one has `&`s of its own.
    for (name, ends_at_ampersand) in [
        ("AccountKey=", false),
        ("SharedAccessSignature=", false),
        ("sig=", true),
    ] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(index) = rest.find(name) {
            // `sig=` only as a whole query parameter, not inside a longer word.
            let boundary = index == 0
                || rest[..index]
                    .chars()
                    .next_back()
                    .is_some_and(|c| !c.is_ascii_alphanumeric() && c != '_');
            let (head, tail) = rest.split_at(index + name.len());
            result.push_str(head);
            let end = tail
                .find(|c: char| {
                    matches!(c, ';' | '`' | '"' | '\'')
                        || (ends_at_ampersand && c == '&')
                        || c.is_whitespace()
                })
                .unwrap_or(tail.len());
            if boundary && end > 0 && &tail[..end] != MASK {
                result.push_str(MASK);
            } else {
                result.push_str(&tail[..end]);
            }
            rest = &tail[end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// Masks the user information of every URL in `text` (`https://user:****@host`), and
/// anaconda.org `/t/<token>/` path segments. Pure: the same text always gives the same result,
/// so it is safe inside the environment key's serialisation.
#[must_use]
pub fn mask_userinfo(text: &str) -> String {
    if let Ok(parsed) = url::Url::parse(text)
        && parsed.has_host()
    {
        return redact_url(text);
    }
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find("://") {
        let (head, tail) = rest.split_at(index + 3);
        result.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '`' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        let scheme = head[..head.len() - 3]
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .next()
            .unwrap_or_default();
        match authority.rfind('@').filter(|_| !names_container(scheme)) {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        result.push_str(user);
                        result.push(':');
                        result.push_str(MASK);
                    }
                    None => result.push_str(MASK),
                }
                result.push_str(&authority[at..]);
            }
            None => result.push_str(authority),
        }
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

/// `text` (a requirements or conda file) with the secrets of every URL in it masked
/// (`--index-url https://user:****@host/simple`, `/t/****/`, `?token=****`); the rest is
/// unchanged byte for byte (`pyfunc-env deps` prints it so on a terminal or in a build log).
#[must_use]
pub fn mask_url_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        match word.find("://") {
            Some(scheme_end) => {
                // `--index-url=https://...`: the URL starts after the last `=` before `://`.
                let start = word[..scheme_end].rfind('=').map_or(0, |i| i + 1);
                out.push_str(&word[..start]);
                let url = &word[start..];
                out.push_str(&mask_userinfo(&redact_url(url)));
            }
            None => out.push_str(word),
        }
        let space_end = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&tail[..space_end]);
        rest = &tail[space_end..];
    }
    out
}

/// Serialises a URL with its secrets masked (for `#[serde(serialize_with)]`).
pub fn serialize_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&mask_userinfo(url))
}

/// Serialises an optional URL with its secrets masked.
pub fn serialize_option_url<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_some(&mask_userinfo(url)),
        None => serializer.serialize_none(),
    }
}

/// Serialises URLs with their secrets masked.
pub fn serialize_urls<S: serde::Serializer>(
    urls: &[String],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(urls.iter().map(|u| mask_userinfo(u)))
}

/// A log writer that masks secrets ([`redact`]) in what is written to it: it collects what
/// it is given and, when flushed or dropped, writes it to `inner` masked. The CLI's tracing
/// subscriber writes each event through a new one, so `-v` output never shows a secret
/// whatever a library logs.
#[derive(Debug)]
pub struct RedactingWriter<W: std::io::Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: std::io::Write> RedactingWriter<W> {
    /// A writer that masks what it passes to `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buffer: Vec::new(),
        }
    }
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let text = redact(&String::from_utf8_lossy(&self.buffer));
            self.buffer.clear();
            self.inner.write_all(text.as_bytes())?;
        }
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret split across two writes is still masked: the text is masked whole, when the
    /// writer is dropped (the tracing subscriber drops it after each event).
    #[test]
    fn a_log_writer_masks_secrets_split_across_writes() {
        register_secret("writer-s3cret-token");
        let mut out = Vec::new();
        {
            let mut writer = RedactingWriter::new(&mut out);
            std::io::Write::write_all(&mut writer, b"DEBUG token writer-s3cr").unwrap();
            std::io::Write::write_all(&mut writer, b"et-token and https://bob:pw123@h.example/\n")
                .unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "DEBUG token **** and https://bob:****@h.example/\n"
        );
    }

    #[test]
    fn urls_in_a_file_lose_their_secrets_and_nothing_else_changes() {
        let text = "--index-url http://alice:hunter22@idx.example/simple\n--extra-index-url=https://x.example/t/tk-123/simple?token=abcdef\n  -f https://TOKEN0123456789@links.example/w\nnumpy==1.26.4 # https://plain.example/\n\r\n";
        assert_eq!(
            mask_url_secrets(text),
            "--index-url http://alice:****@idx.example/simple\n--extra-index-url=https://x.example/t/****/simple?token=****\n  -f https://****@links.example/w\nnumpy==1.26.4 # https://plain.example/\n\r\n"
        );
        assert_eq!(mask_url_secrets(""), "");
    }

    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(
            redact_url("https://alice:s3cret@mirror.example/conda-forge"),
            "https://alice:****@mirror.example/conda-forge"
        );
        assert_eq!(
            redact_url("https://conda.anaconda.org/t/tk-12345/private"),
            "https://conda.anaconda.org/t/****/private"
        );
        assert_eq!(
            redact_url("https://idx.example/simple?token=abcdef"),
            "https://idx.example/simple?token=****"
        );
        assert_eq!(
            redact_url("https://conda.anaconda.org/conda-forge"),
            "https://conda.anaconda.org/conda-forge"
        );
    }

    #[test]
    fn azure_containers_stay_and_azure_secrets_go() {
        let blob = "wasbs://mlflow-artifacts-prod@acct.blob.core.windows.net/1/model";
        assert_eq!(redact_url(blob), blob);
        assert_eq!(
            redact(&format!("Listing `{blob}` failed")),
            format!("Listing `{blob}` failed")
        );
        let lake = "abfss://fs@lake.dfs.core.windows.net/m";
        assert_eq!(redact(&format!("at {lake}")), format!("at {lake}"));
        assert_eq!(
            redact_url("https://a.blob.core.windows.net/c/b?sv=2022-11-02&sig=c2lnbmF0dXJl"),
            "https://a.blob.core.windows.net/c/b?sv=2022-11-02&sig=****"
        );
        assert_eq!(
            redact(
                "bad DefaultEndpointsProtocol=https;AccountName=a;AccountKey=a2V5LXZhbHVl==;EndpointSuffix=core.windows.net here"
            ),
            "bad DefaultEndpointsProtocol=https;AccountName=a;AccountKey=****;EndpointSuffix=core.windows.net here"
        );
        assert_eq!(
            redact("BlobEndpoint=https://a/;SharedAccessSignature=sv=1&sig=abc"),
            "BlobEndpoint=https://a/;SharedAccessSignature=****"
        );
        assert_eq!(
            redact("GET https://a/c?sv=1&sig=abc%3D&se=2 and design=ok"),
            "GET https://a/c?sv=1&sig=****&se=2 and design=ok"
        );
        // Other schemes still lose their user information.
        assert_eq!(
            redact("see https://carol:pw@other.example/x"),
            "see https://carol:****@other.example/x"
        );
    }

    #[test]
    fn registered_secrets_are_masked_anywhere() {
        register_url("https://bob:hunter22@private.example/simple");
        assert_eq!(
            redact("failed: token hunter22 rejected"),
            "failed: token **** rejected"
        );
        assert_eq!(
            redact("GET https://carol:pw@other.example/x failed"),
            "GET https://carol:****@other.example/x failed"
        );
        assert_eq!(
            redact("no secrets here https://a.example/b"),
            "no secrets here https://a.example/b"
        );
    }
}
