//! Parsing model URIs with MLflow's meanings (`mlflow/store/artifact/utils/models.py`
//! `_parse_model_uri`, `ModelsArtifactRepository.split_models_uri`,
//! `RunsArtifactRepository.parse_runs_uri`, `MlflowArtifactsRepository.resolve_uri`).
//! No network here.

use std::path::PathBuf;

use crate::SourceError;
use crate::azure::{AzureService, AzureUri};

/// Which version of a registered model a `models:/` URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `models:/NAME/3`: one version, immutable.
    Version(String),
    /// `models:/NAME/latest` (any case): the highest version of any stage.
    Latest,
    /// `models:/NAME/Production`: the highest version in that (legacy) stage.
    Stage(String),
    /// `models:/NAME@champion`.
    Alias(String),
}

/// A model URI, as MLflow reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// A local directory (a plain path or `file://`).
    Local(PathBuf),
    /// `models:/NAME/SUFFIX[/PATH]` or `models:/NAME@ALIAS[/PATH]`.
    Registered {
        /// The registered model's name.
        name: String,
        /// Version, `latest`, stage or alias.
        selector: Selector,
        /// An artifact path below the version's root (`split_models_uri`), usually empty.
        path: String,
    },
    /// `models:/m-...`: an MLflow 3 logged model by id.
    LoggedModel {
        /// The logged model's id.
        id: String,
    },
    /// `runs:/RUN_ID/PATH`.
    Run {
        /// The run id.
        run_id: String,
        /// The run-relative artifact path (may be empty).
        path: String,
    },
    /// `mlflow-artifacts:/PATH` or `mlflow-artifacts://HOST:PORT/PATH`.
    MlflowArtifacts {
        /// `HOST:PORT` if given, else the tracking server's.
        netloc: Option<String>,
        /// The path under the server's artifact root.
        path: String,
    },
    /// `s3://BUCKET/PREFIX`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (no leading or trailing `/`).
        prefix: String,
    },
    /// `gs://BUCKET/PREFIX` (MLflow's `GCSArtifactRepository`).
    Gcs {
        /// The bucket.
        bucket: String,
        /// The object name prefix (no leading or trailing `/`).
        prefix: String,
    },
    /// `wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH` or
    /// `abfss://FILESYSTEM@ACCOUNT.dfs.core.windows.net/PATH`.
    Azure(AzureUri),
}

impl ModelUri {
    /// Parses `text` the way MLflow's CLI does: a URI with a scheme, else a local path.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let Some((scheme, rest)) = split_scheme(text) else {
            return Ok(Self::Local(PathBuf::from(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => local_file_uri_to_path(rest)
                .map(Self::Local)
                .ok_or_else(|| invalid(text, FILE_FORM)),
            "models" => parse_models(text, rest),
            "runs" => parse_runs(text, rest),
            "mlflow-artifacts" => parse_mlflow_artifacts(text, rest),
            "s3" => {
                let (bucket, prefix) = bucket_and_prefix(text, rest, S3_FORM)?;
                Ok(Self::S3 { bucket, prefix })
            }
            "gs" => {
                let (bucket, prefix) = bucket_and_prefix(text, rest, GCS_FORM)?;
                Ok(Self::Gcs { bucket, prefix })
            }
            "wasbs" => Ok(Self::Azure(AzureUri::parse(text, AzureService::Blob)?)),
            "abfss" => Ok(Self::Azure(AzureUri::parse(text, AzureService::DataLake)?)),
            // `wasb://` and `abfs://` (no TLS) fall through: MLflow has no repository for them.
            _ => Err(SourceError::UnsupportedScheme {
                uri: env_spec::redact::redact_url(text),
                scheme: scheme.to_string(),
            }),
        }
    }

    /// The local directory `text` names (a plain path, or a `file:` URI decoded), or `None`
    /// for a remote URI or one that does not parse. Callers that open a local model use
    /// this, never `text` itself: `file:///srv/model` is the directory `/srv/model`.
    #[must_use]
    pub fn local_path(text: &str) -> Option<PathBuf> {
        match Self::parse(text) {
            Ok(Self::Local(path)) => Some(path),
            _ => None,
        }
    }

    /// Whether the URI names content that never changes (a version, a run path, an object),
    /// so a cached download is reused without asking the server.
    #[must_use]
    pub fn is_immutable(&self) -> bool {
        !matches!(
            self,
            Self::Registered {
                selector: Selector::Latest | Selector::Stage(_) | Selector::Alias(_),
                ..
            }
        )
    }
}

const MODELS_FORM: &str = "Models URIs look like `models:/NAME/VERSION`, `models:/NAME/latest`, `models:/NAME/STAGE` or `models:/NAME@ALIAS`";
const RUNS_FORM: &str = "Runs URIs look like `runs:/RUN_ID/path/to/model`";
const FILE_FORM: &str = "File URIs look like `file:///absolute/path/to/model`";
const S3_FORM: &str = "S3 URIs look like `s3://bucket/path/to/model`";
const GCS_FORM: &str = "GCS URIs look like `gs://bucket/path/to/model`";
const ARTIFACTS_FORM: &str =
    "MLflow artifact URIs look like `mlflow-artifacts:/EXPERIMENT/RUN/artifacts/model`";

/// MLflow's `local_file_uri_to_path` for what follows `file:`: `urlparse`'s path (the network
/// location after `//` is dropped, as on POSIX; the query after `?` and the fragment after `#`
/// are not part of it), percent-decoded like `url2pathname` (`unquote`, invalid UTF-8
/// replaced). `file:relative/dir` is a relative path, as in MLflow. `None` if the path is
/// empty.
fn local_file_uri_to_path(rest: &str) -> Option<PathBuf> {
    let rest = rest.split(['#', '?']).next().unwrap_or_default();
    let path = match rest.strip_prefix("//") {
        Some(after) => after.find('/').map_or("", |slash| &after[slash..]),
        None => rest,
    };
    if path.is_empty() {
        return None;
    }
    Some(PathBuf::from(percent_decode(path)))
}

/// Python's `urllib.parse.unquote`: `%XX` sequences become bytes, decoded as UTF-8 with
/// replacement; a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits make at most 255.
                out.push(u8::try_from(high * 16 + low).expect("two hex digits fit a byte"));
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `//BUCKET/PREFIX` (after `s3:` or `gs:`), as `urlparse` splits it: the bucket is the
/// network location, the prefix the path without its leading and trailing `/`.
fn bucket_and_prefix(
    uri: &str,
    rest: &str,
    form: &'static str,
) -> Result<(String, String), SourceError> {
    let body = rest.strip_prefix("//").ok_or_else(|| invalid(uri, form))?;
    let (bucket, prefix) = body.split_once('/').unwrap_or((body, ""));
    if bucket.is_empty() {
        return Err(invalid(uri, form));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

fn invalid(uri: &str, form: &'static str) -> SourceError {
    SourceError::InvalidUri {
        uri: env_spec::redact::redact_url(uri),
        form,
    }
}

/// `urllib.parse.urlparse`'s scheme: letters, digits, `+-.`, starting with a letter. A single
/// letter is a Windows drive (`C:\...`), not a scheme.
fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let valid = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

fn parse_models(uri: &str, rest: &str) -> Result<ModelUri, SourceError> {
    if rest.starts_with("//") {
        return Err(SourceError::NotSupportedYet {
            uri: env_spec::redact::redact_url(uri),
            what: "`models://PROFILE@databricks/...` (a registry named in the URI)",
        });
    }
    if !rest.starts_with('/') || rest.len() <= 1 {
        return Err(invalid(uri, MODELS_FORM));
    }
    let path = rest.trim_start_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    if parts[0].trim().is_empty() {
        return Err(invalid(uri, MODELS_FORM));
    }
    // split_models_uri: `models:/NAME@ALIAS/path` keeps one segment, `models:/NAME/V/path` two.
    if let Some((name, alias)) = parts[0].rsplit_once('@') {
        if alias.trim().is_empty() || name.trim().is_empty() {
            return Err(invalid(uri, MODELS_FORM));
        }
        return Ok(ModelUri::Registered {
            name: name.to_string(),
            selector: Selector::Alias(alias.to_string()),
            path: parts[1..].join("/").trim_matches('/').to_string(),
        });
    }
    if parts.len() == 1 {
        return Ok(ModelUri::LoggedModel {
            id: parts[0].to_string(),
        });
    }
    let suffix = parts[1];
    if suffix.trim().is_empty() {
        return Err(invalid(uri, MODELS_FORM));
    }
    let selector = if suffix.bytes().all(|b| b.is_ascii_digit()) {
        Selector::Version(suffix.to_string())
    } else if suffix.eq_ignore_ascii_case("latest") {
        Selector::Latest
    } else {
        Selector::Stage(suffix.to_string())
    };
    Ok(ModelUri::Registered {
        name: parts[0].to_string(),
        selector,
        path: parts[2..].join("/").trim_matches('/').to_string(),
    })
}

fn parse_runs(uri: &str, rest: &str) -> Result<ModelUri, SourceError> {
    if rest.starts_with("//") {
        return Err(SourceError::NotSupportedYet {
            uri: env_spec::redact::redact_url(uri),
            what: "`runs://PROFILE@databricks/...` (a tracking server named in the URI)",
        });
    }
    if !rest.starts_with('/') || rest.len() <= 1 {
        return Err(invalid(uri, RUNS_FORM));
    }
    let (run_id, path) = rest[1..].split_once('/').unwrap_or((&rest[1..], ""));
    if run_id.is_empty() {
        return Err(invalid(uri, RUNS_FORM));
    }
    Ok(ModelUri::Run {
        run_id: run_id.to_string(),
        path: path.trim_matches('/').to_string(),
    })
}

fn parse_mlflow_artifacts(uri: &str, rest: &str) -> Result<ModelUri, SourceError> {
    let (netloc, path) = match rest.strip_prefix("//") {
        Some(body) => {
            let (netloc, path) = body.split_once('/').unwrap_or((body, ""));
            // `mlflow-artifacts://5000/path`: a port without a host (MLflow refuses it too).
            if netloc.parse::<f64>().is_ok() {
                return Err(invalid(uri, ARTIFACTS_FORM));
            }
            ((!netloc.is_empty()).then(|| netloc.to_string()), path)
        }
        None => (None, rest),
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(invalid(uri, ARTIFACTS_FORM));
    }
    Ok(ModelUri::MlflowArtifacts {
        netloc,
        path: path.to_string(),
    })
}

/// The models a list file names (`create --from FILE`): one per line, blank lines and comments
/// skipped. As in a requirements file, `#` starts a comment only at the start of a line or
/// after whitespace, so `models/run#3` and `s3://b/k#v` are names. Relative paths are relative
/// to the list's directory `list_dir`; model URIs stay as written; a `file:` URI is the
/// directory it names.
#[must_use]
pub fn parse_model_list(text: &str, list_dir: &std::path::Path) -> Vec<PathBuf> {
    text.lines()
        .map(|line| strip_comment(line).trim())
        .filter(|line| !line.is_empty())
        .map(|line| match ModelUri::local_path(line) {
            Some(path) if path.is_relative() => list_dir.join(path),
            Some(path) => path,
            None => PathBuf::from(line),
        })
        .collect()
}

/// The models `list` names ([`parse_model_list`], relative to its directory).
pub fn read_model_list(list: &std::path::Path) -> Result<Vec<PathBuf>, crate::SourceError> {
    let text = fs_err::read_to_string(list).map_err(|source| crate::SourceError::ModelList {
        path: list.to_path_buf(),
        source,
    })?;
    let dir = list.parent().unwrap_or(std::path::Path::new("."));
    Ok(parse_model_list(&text, dir))
}

/// A model-list line without its comment ([`parse_model_list`]).
fn strip_comment(line: &str) -> &str {
    let mut previous_is_space = true;
    for (index, c) in line.char_indices() {
        if c == '#' && previous_is_space {
            return &line[..index];
        }
        previous_is_space = c.is_whitespace();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list that is not there is the user's wrong path (exit code 1), named with the fix; a
    /// list that is there gives its models relative to its directory.
    #[test]
    fn a_missing_model_list_is_the_users_error() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("models.txt");
        let error = read_model_list(&list).unwrap_err();
        assert!(error.is_user_error(), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("Failed to read the model list `{}`", list.display())
        );
        assert!(read_model_list(dir.path()).unwrap_err().is_user_error());
        fs_err::write(&list, "a # first\nmodels:/m/1\n").unwrap();
        assert_eq!(
            read_model_list(&list).unwrap(),
            [dir.path().join("a"), PathBuf::from("models:/m/1")]
        );
    }

    #[test]
    fn a_hash_starts_a_comment_only_at_line_start_or_after_whitespace() {
        for (line, expected) in [
            ("# all of them", ""),
            ("models/a # the first", "models/a "),
            ("models/a\t#tab", "models/a\t"),
            ("models/run#3", "models/run#3"),
            ("s3://bucket/k#v/model", "s3://bucket/k#v/model"),
            ("models/x#y # comment", "models/x#y "),
            ("", ""),
        ] {
            assert_eq!(strip_comment(line), expected, "{line:?}");
        }
    }

    #[test]
    fn a_model_list_is_relative_to_its_directory_and_keeps_uris() {
        let list = "# models\na\n\n/abs/b # second\nmodels:/iris/1\nfile:///srv/m\n";
        assert_eq!(
            parse_model_list(list, std::path::Path::new("/lists")),
            [
                PathBuf::from("/lists/a"),
                PathBuf::from("/abs/b"),
                PathBuf::from("models:/iris/1"),
                PathBuf::from("/srv/m"),
            ]
        );
    }

    fn registered(name: &str, selector: Selector, path: &str) -> ModelUri {
        ModelUri::Registered {
            name: name.into(),
            selector,
            path: path.into(),
        }
    }

    #[test]
    fn models_uris_mean_what_mlflow_says() {
        let cases = [
            (
                "models:/iris/3",
                registered("iris", Selector::Version("3".into()), ""),
            ),
            (
                "models:/iris/latest",
                registered("iris", Selector::Latest, ""),
            ),
            (
                "models:/iris/LATEST",
                registered("iris", Selector::Latest, ""),
            ),
            (
                "models:/iris/Production",
                registered("iris", Selector::Stage("Production".into()), ""),
            ),
            (
                "models:/iris@champion",
                registered("iris", Selector::Alias("champion".into()), ""),
            ),
            (
                "models:/iris@champion/sub",
                registered("iris", Selector::Alias("champion".into()), "sub"),
            ),
            (
                "models:/iris/3/sub/dir",
                registered("iris", Selector::Version("3".into()), "sub/dir"),
            ),
            (
                "models:/m-0123",
                ModelUri::LoggedModel {
                    id: "m-0123".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(ModelUri::parse(text).unwrap(), expected, "{text}");
        }
        for bad in [
            "models:",
            "models:/",
            "models:/iris/",
            "models:/@x",
            "models:/iris@",
            "models:iris/1",
        ] {
            let error = ModelUri::parse(bad).unwrap_err();
            assert!(
                matches!(error, SourceError::InvalidUri { .. }),
                "{bad}: {error:?}"
            );
        }
        assert!(matches!(
            ModelUri::parse("models://prof@databricks/iris/1").unwrap_err(),
            SourceError::NotSupportedYet { .. }
        ));
    }

    #[test]
    fn immutability_follows_the_selector() {
        assert!(ModelUri::parse("models:/iris/3").unwrap().is_immutable());
        assert!(ModelUri::parse("runs:/abc/model").unwrap().is_immutable());
        for moving in [
            "models:/iris/latest",
            "models:/iris/Staging",
            "models:/iris@champion",
        ] {
            assert!(!ModelUri::parse(moving).unwrap().is_immutable(), "{moving}");
        }
    }

    #[test]
    fn runs_artifacts_files_paths_and_s3() {
        assert_eq!(
            ModelUri::parse("runs:/0a1b/model").unwrap(),
            ModelUri::Run {
                run_id: "0a1b".into(),
                path: "model".into()
            }
        );
        assert_eq!(
            ModelUri::parse("runs:/0a1b").unwrap(),
            ModelUri::Run {
                run_id: "0a1b".into(),
                path: String::new()
            }
        );
        assert!(ModelUri::parse("runs:/").is_err());
        assert_eq!(
            ModelUri::parse("mlflow-artifacts:/1/abc/artifacts/model").unwrap(),
            ModelUri::MlflowArtifacts {
                netloc: None,
                path: "1/abc/artifacts/model".into()
            }
        );
        assert_eq!(
            ModelUri::parse("mlflow-artifacts://host:5000/1/abc/artifacts/model/").unwrap(),
            ModelUri::MlflowArtifacts {
                netloc: Some("host:5000".into()),
                path: "1/abc/artifacts/model".into()
            }
        );
        assert!(ModelUri::parse("mlflow-artifacts://5000/x").is_err());
        assert_eq!(
            ModelUri::parse("file:///srv/model").unwrap(),
            ModelUri::Local("/srv/model".into())
        );
        // MLflow's `local_file_uri_to_path`: percent-decoded, the host dropped, `file:` with a
        // relative path relative, query and fragment not part of the path.
        for (uri, path) in [
            ("file:///srv/my%20model", "/srv/my model"),
            ("file:///srv/caf%C3%A9/m%23x", "/srv/café/m#x"),
            ("file://localhost/srv/model", "/srv/model"),
            ("file://host/srv/model", "/srv/model"),
            ("file:/srv/model", "/srv/model"),
            ("file:relative/model", "relative/model"),
            ("file:./model", "./model"),
            ("file:///srv/model#frag", "/srv/model"),
            ("file:///srv/model?x=1", "/srv/model"),
            ("file:///srv/100%", "/srv/100%"),
            ("FILE:///srv/model", "/srv/model"),
        ] {
            assert_eq!(
                ModelUri::parse(uri).unwrap(),
                ModelUri::Local(path.into()),
                "{uri}"
            );
            assert_eq!(
                ModelUri::local_path(uri),
                Some(PathBuf::from(path)),
                "{uri}"
            );
        }
        for empty in ["file:", "file://", "file://host"] {
            assert!(
                matches!(ModelUri::parse(empty), Err(SourceError::InvalidUri { .. })),
                "{empty}"
            );
        }
        assert_eq!(ModelUri::local_path("models:/iris/1"), None);
        assert_eq!(
            ModelUri::parse("model").unwrap(),
            ModelUri::Local("model".into())
        );
        assert_eq!(
            ModelUri::parse("C:model").unwrap(),
            ModelUri::Local("C:model".into())
        );
        assert_eq!(
            ModelUri::parse("s3://bucket/models/iris/").unwrap(),
            ModelUri::S3 {
                bucket: "bucket".into(),
                prefix: "models/iris".into()
            }
        );
        assert!(matches!(
            ModelUri::parse("hdfs://nn/models").unwrap_err(),
            SourceError::UnsupportedScheme { .. }
        ));
    }

    #[test]
    fn gcs_and_azure_uris() {
        assert_eq!(
            ModelUri::parse("gs://bucket/models/iris/").unwrap(),
            ModelUri::Gcs {
                bucket: "bucket".into(),
                prefix: "models/iris".into()
            }
        );
        assert_eq!(
            ModelUri::parse("gs://bucket").unwrap(),
            ModelUri::Gcs {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert!(matches!(
            ModelUri::parse("gs:/bucket/x").unwrap_err(),
            SourceError::InvalidUri { .. }
        ));
        let ModelUri::Azure(blob) =
            ModelUri::parse("wasbs://models@account.blob.core.windows.net/iris").unwrap()
        else {
            panic!("not Azure")
        };
        assert_eq!(
            (
                blob.service,
                blob.container.as_str(),
                blob.account.as_str(),
                blob.prefix.as_str()
            ),
            (AzureService::Blob, "models", "account", "iris")
        );
        let ModelUri::Azure(lake) =
            ModelUri::parse("abfss://fs@account.dfs.core.windows.net/iris").unwrap()
        else {
            panic!("not Azure")
        };
        assert_eq!(lake.service, AzureService::DataLake);
        // MLflow has no repository for the unencrypted forms.
        for plain in [
            "wasb://models@account.blob.core.windows.net/iris",
            "abfs://fs@account.dfs.core.windows.net/iris",
        ] {
            assert!(matches!(
                ModelUri::parse(plain).unwrap_err(),
                SourceError::UnsupportedScheme { .. }
            ));
        }
        assert!(ModelUri::parse("gs://b/p").unwrap().is_immutable());
    }
}
