//! Signed remote-cache entries (issue 26): trust the builder, not the bucket.
//!
//! Keys are Ed25519 ([`ed25519_dalek`]), named so they can be rotated, and written as Nix
//! writes its binary-cache keys: `NAME:BASE64`, where a secret key holds the 32-byte seed
//! followed by the 32-byte public key (libsodium's layout, so a key made by
//! `nix-store --generate-binary-cache-key` works too) and a public key its 32 bytes.
//!
//! A pusher signs the exact bytes of the remote manifest, after the domain-separation prefix
//! [`SIGNED_PREFIX`] (a signature over a manifest can never be taken for a signature over
//! anything else). The manifest names everything a puller trusts: the key and platform (a
//! puller checks both equal what it asked for, so a signed manifest replayed under another
//! key is refused), every file's path, mode, size and sha256, each pack's digest and size,
//! the pushing version, the push time and the provenance. Blobs are then checked against
//! those hashes as they arrive, so one signature covers every byte that is installed.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What every signature covers before the manifest's bytes.
pub const SIGNED_PREFIX: &[u8] = b"pyfunc-env remote manifest v2\n";

/// A key that cannot be read or used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KeyError {
    /// `NAME:BASE64` without a name.
    #[error(
        "Invalid key `{shown}`: expected `NAME:BASE64` (a name such as `ci-1`, a colon, then the key)"
    )]
    #[diagnostic(help(
        "Make a key pair with `pyfunc-env cache keygen ci-1`; the public key is the line in `ci-1.public`"
    ))]
    MissingName {
        /// The text, cut short (never a secret).
        shown: String,
    },
    /// The name has characters that do not belong in one.
    #[error("Invalid key name `{name}`: use letters, digits, `.`, `_` and `-` (`ci-1`)")]
    BadName {
        /// The name.
        name: String,
    },
    /// Not base64.
    #[error("Invalid key `{name}`: the text after `{name}:` is not base64")]
    #[diagnostic(help(
        "Copy the whole line of the `.public` file `pyfunc-env cache keygen` wrote"
    ))]
    BadBase64 {
        /// The key's name.
        name: String,
    },
    /// Base64 of the wrong number of bytes.
    #[error("Invalid key `{name}`: {found} bytes where a {what} key has {expected}")]
    WrongLength {
        /// The key's name.
        name: String,
        /// `public` or `secret`.
        what: &'static str,
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: String,
    },
    /// A secret key whose second half is not its public key.
    #[error("Invalid secret key `{name}`: its public half does not match its seed")]
    Mismatched {
        /// The key's name.
        name: String,
    },
    /// A key file that cannot be read.
    #[error("Failed to read the key file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file that cannot be parsed.
    #[error("Invalid key file `{}`", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<KeyError>,
    },
    /// `keygen` would overwrite a key.
    #[error("`{}` exists already; a key is never overwritten", path.display())]
    #[diagnostic(help(
        "Choose the next name (`ci-2` after `ci-1`): trust both while agents move over, then remove the old one"
    ))]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A key file that cannot be written.
    #[error("Failed to write `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No randomness from the operating system.
    #[error("The operating system gave no random bytes for the key: {message}")]
    Random {
        /// Why.
        message: String,
    },
}

/// Why an entry is not trusted: a puller with trusted keys treats it as a miss, or as an
/// error with `--remote-cache-require-signed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The entry carries no signature.
    #[error("it is not signed")]
    Unsigned,
    /// Signed, but by no key this agent trusts.
    #[error("it is signed by {}, which this agent does not trust", quoted(names))]
    UntrustedKey {
        /// The names the signatures give.
        names: Vec<String>,
    },
    /// A signature in a trusted key's name that does not verify: the manifest was changed
    /// after signing, or the signature forged.
    #[error("its signature by `{key}` does not verify (the entry was changed after it was signed)")]
    Invalid {
        /// The trusted key's name.
        key: String,
    },
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(KeyError::BadName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// `NAME:BASE64` into the name and the bytes.
fn split(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let text = text.trim();
    let Some((name, data)) = text.split_once(':') else {
        return Err(KeyError::MissingName {
            shown: text.chars().take(12).collect(),
        });
    };
    check_name(name)?;
    let bytes = STANDARD
        .decode(data.trim())
        .map_err(|_| KeyError::BadBase64 {
            name: name.to_string(),
        })?;
    Ok((name.to_string(), bytes))
}

/// A public key: what agents trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Its name (`ci-1`).
    pub name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses `NAME:BASE64` (32 bytes).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(text)?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength {
                name: name.clone(),
                what: "public",
                found: bytes.len(),
                expected: "32".to_string(),
            })?;
        let key = VerifyingKey::from_bytes(&array).map_err(|_| KeyError::WrongLength {
            name: name.clone(),
            what: "public",
            found: 32,
            expected: "32 (of a point on the curve)".to_string(),
        })?;
        Ok(Self { name, key })
    }

    /// Parses whitespace-separated keys (`PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS`, like Nix's
    /// `trusted-public-keys`).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, KeyError> {
        text.split_whitespace().map(Self::parse).collect()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, STANDARD.encode(self.key.as_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A secret key: what CI signs with. Its [`Debug`] shows only the name.
#[derive(Clone)]
pub struct SecretKey {
    /// Its name (`ci-1`).
    pub name: String,
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

impl SecretKey {
    /// A new key from the operating system's randomness.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random {
            message: e.to_string(),
        })?;
        Ok(Self {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `NAME:BASE64` of the seed and public key (64 bytes, as Nix writes them) or of
    /// the seed alone (32).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split(text)?;
        let wrong = || KeyError::WrongLength {
            name: name.clone(),
            what: "secret",
            found: bytes.len(),
            expected: "64 (or 32)".to_string(),
        };
        let seed: [u8; 32] = bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(wrong)?;
        let key = SigningKey::from_bytes(&seed);
        match bytes.len() {
            32 => {}
            64 => {
                if bytes[32..] != key.verifying_key().as_bytes()[..] {
                    return Err(KeyError::Mismatched { name });
                }
            }
            _ => return Err(wrong()),
        }
        Ok(Self { name, key })
    }

    /// Reads a secret key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = fs_err::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| KeyError::File {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Its public key.
    #[must_use]
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// `NAME:BASE64(seed and public key)`, the secret file's line.
    fn to_line(&self) -> String {
        let mut bytes = self.key.to_bytes().to_vec();
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}:{}", self.name, STANDARD.encode(bytes))
    }

    /// Signs `manifest` (the exact bytes of a remote manifest).
    #[must_use]
    pub fn sign(&self, manifest: &[u8]) -> Signature {
        let signature = self.key.sign(&signed_bytes(manifest));
        Signature {
            key: self.name.clone(),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// What a signature covers: [`SIGNED_PREFIX`], then the manifest's bytes.
#[must_use]
pub fn signed_bytes(manifest: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGNED_PREFIX.len() + manifest.len());
    bytes.extend_from_slice(SIGNED_PREFIX);
    bytes.extend_from_slice(manifest);
    bytes
}

/// One signature of a remote manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The signing key's name.
    pub key: String,
    /// Base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

/// Which keys a puller trusts, and whether an entry they do not sign is an error.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The trusted public keys (none: every intact entry is used, signed or not).
    pub keys: Vec<PublicKey>,
    /// An entry without a valid signature is an error rather than a miss.
    pub require_signed: bool,
}

impl Trust {
    /// Whether entries are checked at all.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The name of a trusted key whose signature over `manifest` verifies (any one is
    /// enough: during a rotation both the old and the new key are trusted).
    pub fn verify(
        &self,
        manifest: &[u8],
        signatures: &[Signature],
    ) -> Result<String, SignatureError> {
        verify(&self.keys, manifest, signatures)
    }
}

/// See [`Trust::verify`].
pub fn verify(
    keys: &[PublicKey],
    manifest: &[u8],
    signatures: &[Signature],
) -> Result<String, SignatureError> {
    if signatures.is_empty() {
        return Err(SignatureError::Unsigned);
    }
    let bytes = signed_bytes(manifest);
    let mut invalid = None;
    for signature in signatures {
        for key in keys.iter().filter(|k| k.name == signature.key) {
            let valid = STANDARD
                .decode(&signature.signature)
                .ok()
                .and_then(|raw| ed25519_dalek::Signature::from_slice(&raw).ok())
                .is_some_and(|sig| key.key.verify(&bytes, &sig).is_ok());
            if valid {
                return Ok(key.name.clone());
            }
            invalid.get_or_insert_with(|| key.name.clone());
        }
    }
    match invalid {
        Some(key) => Err(SignatureError::Invalid { key }),
        None => Err(SignatureError::UntrustedKey {
            names: signatures.iter().map(|s| s.key.clone()).collect(),
        }),
    }
}

/// The files `keygen` wrote.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// `NAME.secret` (mode 0600).
    pub secret: PathBuf,
    /// `NAME.public`.
    pub public_file: PathBuf,
    /// The public key.
    pub public: PublicKey,
}

/// Writes a new key pair `NAME.secret` (mode 0600) and `NAME.public` into `dir`, refusing to
/// overwrite either.
pub fn keygen(name: &str, dir: &Path) -> Result<KeyPair, KeyError> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::io::Write as _;
    let key = SecretKey::generate(name)?;
    let secret = dir.join(format!("{name}.secret"));
    let public_file = dir.join(format!("{name}.public"));
    for path in [&secret, &public_file] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    let write = |path: &Path, mode: u32, text: &str| {
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                    path: path.to_path_buf(),
                },
                _ => KeyError::Write {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        file.write_all(format!("{text}\n").as_bytes())
            .map_err(|source| KeyError::Write {
                path: path.to_path_buf(),
                source,
            })
    };
    write(&secret, 0o600, &key.to_line())?;
    let public = key.public();
    write(&public_file, 0o644, &public.to_string())?;
    Ok(KeyPair {
        secret,
        public_file,
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, seed: u8) -> SecretKey {
        SecretKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    #[test]
    fn public_keys_parse_and_print_as_nix_writes_them() {
        let public = key("ci-1", 7).public();
        let line = public.to_string();
        assert!(line.starts_with("ci-1:"), "{line}");
        assert_eq!(PublicKey::parse(&format!("  {line}\n")).unwrap(), public);
        let two = PublicKey::parse_list(&format!("{line}\n {} ", key("ci-2", 8).public())).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].name, "ci-2");
    }

    #[test]
    fn malformed_keys_say_what_is_wrong() {
        let b64 = STANDARD.encode([1u8; 32]);
        assert!(matches!(
            PublicKey::parse(&b64),
            Err(KeyError::MissingName { .. })
        ));
        assert!(matches!(
            PublicKey::parse(&format!(":{b64}")),
            Err(KeyError::BadName { .. })
        ));
        assert!(matches!(
            PublicKey::parse(&format!("ci 1:{b64}")),
            Err(KeyError::BadName { .. })
        ));
        assert!(matches!(
            PublicKey::parse("ci-1:not base64!"),
            Err(KeyError::BadBase64 { .. })
        ));
        let short = STANDARD.encode([1u8; 31]);
        let error = PublicKey::parse(&format!("ci-1:{short}")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Invalid key `ci-1`: 31 bytes where a public key has 32"
        );
        // A secret whose public half belongs to another seed.
        let mut bytes = [3u8; 32].to_vec();
        bytes.extend_from_slice(key("x", 4).public().key.as_bytes());
        assert!(matches!(
            SecretKey::parse(&format!("ci-1:{}", STANDARD.encode(bytes))),
            Err(KeyError::Mismatched { .. })
        ));
        // A secret never appears in a message.
        let secret = key("ci-1", 5).to_line();
        let error = PublicKey::parse(&secret).unwrap_err();
        assert!(!error.to_string().contains(&secret[6..]), "{error}");
    }

    #[test]
    fn secret_keys_round_trip_in_nix_layout() {
        let secret = key("ci-1", 9);
        let line = secret.to_line();
        let decoded = STANDARD.decode(line.split_once(':').unwrap().1).unwrap();
        assert_eq!(decoded.len(), 64);
        assert_eq!(&decoded[32..], secret.public().key.as_bytes());
        let parsed = SecretKey::parse(&line).unwrap();
        assert_eq!(parsed.public(), secret.public());
        // The seed alone works too.
        let seed = format!("ci-1:{}", STANDARD.encode(&decoded[..32]));
        assert_eq!(SecretKey::parse(&seed).unwrap().public(), secret.public());
    }

    #[test]
    fn signatures_cover_the_prefix_and_every_byte() {
        let (ci1, ci2, other) = (key("ci-1", 1), key("ci-2", 2), key("ci-1", 3));
        let trusted = [ci1.public(), ci2.public()];
        let manifest = br#"{"key":"abc","platform":"linux-64"}"#;
        let signature = ci1.sign(manifest);
        assert_eq!(
            verify(&trusted, manifest, std::slice::from_ref(&signature)),
            Ok("ci-1".into())
        );
        // Rotation: either trusted key is enough; an untrusted signature beside it is ignored.
        let by_two = [key("old", 4).sign(manifest), ci2.sign(manifest)];
        assert_eq!(verify(&trusted, manifest, &by_two), Ok("ci-2".into()));
        // One byte changed.
        let changed = br#"{"key":"abd","platform":"linux-64"}"#;
        assert_eq!(
            verify(&trusted, changed, std::slice::from_ref(&signature)),
            Err(SignatureError::Invalid { key: "ci-1".into() })
        );
        // The signed bytes are the prefix and the manifest: a signature over the bare
        // manifest (no domain separation) does not verify.
        let bare = Signature {
            key: "ci-1".into(),
            signature: STANDARD.encode(ci1.key.sign(manifest).to_bytes()),
        };
        assert!(verify(&trusted, manifest, &[bare]).is_err());
        let mut expected = b"pyfunc-env remote manifest v2\n".to_vec();
        expected.extend_from_slice(manifest);
        assert_eq!(signed_bytes(manifest), expected);
        let raw = STANDARD.decode(&signature.signature).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&raw).unwrap();
        assert!(ci1.public().key.verify(&expected, &sig).is_ok());
        // A key of the same name but other bytes: invalid, not trusted.
        assert_eq!(
            verify(&trusted, manifest, &[other.sign(manifest)]),
            Err(SignatureError::Invalid { key: "ci-1".into() })
        );
        assert_eq!(
            verify(&trusted, manifest, &[key("attacker", 5).sign(manifest)]),
            Err(SignatureError::UntrustedKey {
                names: vec!["attacker".into()]
            })
        );
        assert_eq!(
            verify(&trusted, manifest, &[]),
            Err(SignatureError::Unsigned)
        );
        assert!(
            verify(
                &trusted,
                manifest,
                &[Signature {
                    key: "ci-1".into(),
                    signature: "!!".into()
                }]
            )
            .is_err()
        );
    }

    #[test]
    fn keygen_writes_nix_style_files_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let pair = keygen("ci-1", dir.path()).unwrap();
        let mode = fs_err::metadata(&pair.secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let secret = SecretKey::read(&pair.secret).unwrap();
        assert_eq!(secret.public(), pair.public);
        let public = fs_err::read_to_string(&pair.public_file).unwrap();
        assert_eq!(PublicKey::parse(&public).unwrap(), pair.public);
        assert!(matches!(
            keygen("ci-1", dir.path()),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(SecretKey::read(&pair.secret).unwrap().public(), pair.public);
    }
}
