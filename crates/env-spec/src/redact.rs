//! Secrets in URLs (`https://user:token@mirror/...`, anaconda.org `/t/<token>/` paths) never
//! reach output: every URL we show goes through [`redact_url`], and every message that may
//! quote a URL from another library goes through [`redact`], which also masks every secret
//! seen so far by [`register_url`].

use std::sync::{Mutex, PoisonError};

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
        if parsed.username().len() >= 12 && parsed.password().is_none() {
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
            if ["token", "access_token", "api_key", "apikey", "password"].contains(&name.as_ref()) {
                out.push(value.into_owned());
            }
        }
    }
    out
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
    mask_userinfo(&out)
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
        match authority.rfind('@') {
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

#[cfg(test)]
mod tests {
    use super::*;

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
