//! What a remote entry's signatures amount to, in plain words: `cache list --remote` and
//! `cache verify --remote` show these (the CLI adds colour and layout).

use crate::{EntryCheck, RemoteEntry, RemoteListing};

/// `name`, `name2` for a message.
fn quoted(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    names.join(", ")
}

impl RemoteEntry {
    /// Who signed it, for a column: the verified key; the claimed names followed by ` (bad)`
    /// when none verifies with this agent's trusted keys, or by `?` when this agent trusts no
    /// key (nothing checked); or `unsigned`.
    #[must_use]
    pub fn signer(&self) -> String {
        match (&self.verified_by, &self.untrusted) {
            (Some(key), _) => key.clone(),
            _ if self.signed_by.is_empty() => "unsigned".to_string(),
            (None, Some(_)) => format!("{} (bad)", self.signed_by.join(",")),
            (None, None) => format!("{}?", self.signed_by.join(",")),
        }
    }
}

impl RemoteListing {
    /// The bytes the environments would take without sharing packs: the sum of their sizes
    /// (each entry's counts every pack it uses).
    #[must_use]
    pub fn unshared(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }
}

/// What `cache verify --remote` says of a verified entry (after an `OK`): ``KEY: signed by `ci`
/// (verified); 12 files (3.0 MiB) match their sha256``.
impl std::fmt::Display for EntryCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; {} files ({}) match their sha256",
            self.key,
            self.signature(),
            self.blobs,
            env_cache::units::human_size(self.bytes)
        )
    }
}

impl EntryCheck {
    /// How it is signed: ``signed by `ci` (verified)``, `unsigned`, or the names its
    /// signatures claim when no trusted key is configured (nothing checked).
    #[must_use]
    pub fn signature(&self) -> String {
        match (&self.verified_by, self.signed_by.as_slice()) {
            (Some(key), _) => format!("signed by `{key}` (verified)"),
            (None, []) => "unsigned".to_string(),
            (None, names) => format!(
                "signed by {} (not checked: no trusted key configured)",
                quoted(names)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(signed_by: &[&str], verified_by: Option<&str>, untrusted: bool) -> RemoteEntry {
        RemoteEntry {
            key: "k".into(),
            platform: "linux-64".into(),
            size: 0,
            unpacked_bytes: 0,
            packs: 0,
            created: 0,
            model: "m".into(),
            env_manager: "conda".into(),
            tool_version: "0".into(),
            signed_by: signed_by.iter().map(ToString::to_string).collect(),
            verified_by: verified_by.map(str::to_string),
            untrusted: untrusted.then(|| "it is signed by `x`".to_string()),
        }
    }

    #[test]
    fn a_list_names_the_verified_key_or_marks_claims_bad_or_unchecked() {
        assert_eq!(entry(&["ci"], Some("ci"), false).signer(), "ci");
        assert_eq!(entry(&[], None, true).signer(), "unsigned");
        assert_eq!(entry(&[], None, false).signer(), "unsigned");
        assert_eq!(entry(&["a", "b"], None, true).signer(), "a,b (bad)");
        assert_eq!(entry(&["a"], None, false).signer(), "a?");
    }

    /// Two environments sharing a 3-byte pack: 6 bytes without sharing, 3 stored.
    #[test]
    fn a_listing_sums_the_sizes_without_sharing() {
        let shared = |key: &str| RemoteEntry {
            key: key.into(),
            size: 3,
            ..entry(&[], None, false)
        };
        let listing = RemoteListing {
            entries: vec![shared("a"), shared("b")],
            stored: 3,
        };
        assert_eq!(listing.unshared(), 6);
        assert_eq!(
            RemoteListing {
                entries: vec![],
                stored: 0
            }
            .unshared(),
            0
        );
    }

    #[test]
    fn a_check_says_verified_unsigned_or_not_checked() {
        let check = |signed_by: &[&str], verified_by: Option<&str>| EntryCheck {
            path: String::new(),
            key: "k".into(),
            platform: "linux-64".into(),
            signed_by: signed_by.iter().map(ToString::to_string).collect(),
            verified_by: verified_by.map(str::to_string),
            created: 0,
            tool_version: "0".into(),
            blobs: 0,
            bytes: 0,
            downloaded_bytes: 0,
            provenance: crate::Provenance::default(),
        };
        assert_eq!(
            check(&["ci"], Some("ci")).signature(),
            "signed by `ci` (verified)"
        );
        assert_eq!(check(&[], None).signature(), "unsigned");
        assert_eq!(
            EntryCheck {
                blobs: 12,
                bytes: 3 * 1024 * 1024,
                ..check(&["ci"], Some("ci"))
            }
            .to_string(),
            "k: signed by `ci` (verified); 12 files (3.0 MiB) match their sha256"
        );
        assert_eq!(
            check(&["a", "b"], None).signature(),
            "signed by `a`, `b` (not checked: no trusted key configured)"
        );
    }
}
