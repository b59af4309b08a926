//! Image references (`registry/repository:tag@digest`), read the way Docker reads them.

use crate::ImageError;

/// Docker Hub's name in references.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io` when none was).
    pub registry: String,
    /// `library/python`, `team/model`.
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// `sha256:...`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let invalid = |why: &str| ImageError::InvalidReference {
            reference: text.to_string(),
            why: why.to_string(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !digest.starts_with("sha256:") || digest.len() != 71 {
                    return Err(invalid("a digest is `sha256:` and 64 hex digits"));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), rest.to_string()),
        };
        // A tag is after the last `:` of the last path component.
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(colon) => (
                path[..last_slash + colon].to_string(),
                Some(path[last_slash + colon + 1..].to_string()),
            ),
            None => (path, None),
        };
        if repository.is_empty()
            || !repository
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        {
            return Err(invalid(
                "a repository name has lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if let Some(tag) = &tag
            && (tag.is_empty()
                || tag.len() > 128
                || !tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err(invalid("a tag has letters, digits, `.`, `_` and `-`"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the registry API answers on.
    #[must_use]
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The digest if given, else the tag: what to ask the registry for.
    #[must_use]
    pub fn version(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository:tag`, as written in `RepoTags` and annotations.
    #[must_use]
    pub fn tagged(&self) -> String {
        format!(
            "{}/{}:{}",
            self.registry,
            self.repository,
            self.tag.as_deref().unwrap_or("latest")
        )
    }

    /// Whether Docker would use plain HTTP for this registry: loopback and `localhost`.
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        let host = self.host_only();
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The host without the port.
    #[must_use]
    pub fn host_only(&self) -> &str {
        let registry = self.registry.as_str();
        if let Some(inner) = registry.strip_prefix('[') {
            return inner.split(']').next().unwrap_or(inner);
        }
        registry.split(':').next().unwrap_or(registry)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("python").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/python", Some("latest"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("127.0.0.1:5000/team/model:v2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/model", Some("v2"))
        );
        assert!(r.is_loopback());
        let r = Reference::parse("localhost/m").unwrap();
        assert!(r.is_loopback());
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = Reference::parse("gcr.io/distroless/cc-debian12:nonroot").unwrap();
        assert!(!r.is_loopback());
        assert_eq!(r.repository, "distroless/cc-debian12");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("reg.example:443/x@{digest}")).unwrap();
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(digest.as_str())));
        assert!(Reference::parse("Upper/case").is_err());
        assert!(Reference::parse("x:").is_err());
    }
}
