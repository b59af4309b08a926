//! Resolution with MLflow's rules: a URI to the immutable source it names (a registered
//! version, a run's artifact path, an artifact location), then to a cache entry.

use std::sync::Arc;

use env_cache::Cache;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::bucket::fetch_cached;
use crate::download::has_mlmodel;
use crate::{
    MODELS_BUCKET, ModelUri, Reporter, Resolved, Selector, SourceError, SourceSettings,
    SourceWarning, local, mlflow,
};

/// The last resolution of a moving name (alias, `latest`, stage).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ref {
    uri: String,
    name: String,
    version: String,
    resolved: u64,
}

/// Resolves `text` to a local model directory, downloading it into the cache if needed.
pub async fn resolve(
    text: &str,
    settings: &SourceSettings,
    cache: &Cache,
    reporter: Arc<dyn Reporter>,
) -> Result<Resolved, SourceError> {
    let parsed = ModelUri::parse(text)?;
    let shown = env_spec::redact::redact_url(text);
    let server = |uri: Option<&str>| {
        uri.map(|s| s.trim_end_matches('/').to_string())
            .ok_or_else(|| SourceError::NoServer { uri: shown.clone() })
    };
    // Object storage (`s3://`, `gs://`, `wasbs://`, `abfss://`): immutable, keyed by the store
    // and the prefix.
    if let Some(identity) = crate::object::identity(&parsed)? {
        let text = text.to_string();
        let key = key(&identity);
        return fetch_cached(
            cache,
            settings,
            &reporter,
            &key,
            &shown,
            None,
            || async move { Ok(text) },
        )
        .await;
    }
    match parsed {
        ModelUri::Local(dir) => Ok(local(text, dir)),
        ModelUri::Registered {
            name,
            selector,
            path,
        } => {
            let registry = server(settings.registry())?;
            let mut warnings = Vec::new();
            let version = match &selector {
                Selector::Version(version) => version.clone(),
                moving => {
                    resolve_moving(settings, cache, &reporter, &registry, &name, moving, &shown)
                        .await
                        .map(|(version, warning)| {
                            warnings.extend(warning);
                            version
                        })?
                }
            };
            let key = key(&serde_json::json!({
                "kind": "model-version",
                "registry": env_spec::redact::redact_url(&registry),
                "name": name,
                "version": version,
                "path": path,
            }));
            let registered = Some((name.as_str(), version.as_str()));
            let mut resolved = fetch_cached(
                cache,
                settings,
                &reporter,
                &key,
                &shown,
                registered,
                || async {
                    let client = mlflow::Client::new(settings, Arc::clone(&reporter))?;
                    let location = client.download_uri(&registry, &name, &version).await?;
                    Ok(join_uri(&location, &path))
                },
            )
            .await?;
            resolved.name = Some(name);
            resolved.version = Some(version);
            resolved.warnings = warnings;
            Ok(resolved)
        }
        ModelUri::LoggedModel { id } => {
            let tracking = server(settings.tracking_uri.as_deref())?;
            let key = key(&serde_json::json!({
                "kind": "logged-model",
                "tracking": env_spec::redact::redact_url(&tracking),
                "id": id,
            }));
            fetch_cached(cache, settings, &reporter, &key, &shown, None, || async {
                let client = mlflow::Client::new(settings, Arc::clone(&reporter))?;
                client.logged_model_location(&tracking, &id).await
            })
            .await
        }
        ModelUri::Run { run_id, path } => {
            let tracking = server(settings.tracking_uri.as_deref())?;
            let key = key(&serde_json::json!({
                "kind": "run",
                "tracking": env_spec::redact::redact_url(&tracking),
                "run_id": run_id,
                "path": path,
            }));
            fetch_cached(cache, settings, &reporter, &key, &shown, None, || async {
                let client = mlflow::Client::new(settings, Arc::clone(&reporter))?;
                let run = client.run(&tracking, &run_id).await?;
                let location = join_uri(&run.artifact_uri, &path);
                // MLflow 3 keeps `log_model` output in a logged model, not the run's
                // artifacts: `runs:/ID/NAME` then means the logged model NAME of that run.
                if !path.is_empty()
                    && !has_mlmodel(&client, settings, &location)
                        .await
                        .unwrap_or(false)
                {
                    let (model, rest) = path.split_once('/').unwrap_or((&path, ""));
                    if let Some(uri) = client.logged_model_of_run(&tracking, &run, model).await? {
                        return Ok(join_uri(&uri, rest));
                    }
                }
                Ok(location)
            })
            .await
        }
        ModelUri::S3 { .. } | ModelUri::Gcs { .. } | ModelUri::Azure(_) => {
            // `object::identity` is `Some` for each of these: handled above.
            unreachable!("object storage URIs are resolved above")
        }
        ModelUri::MlflowArtifacts { .. } => {
            let tracking = server(settings.tracking_uri.as_deref())?;
            let key = key(&serde_json::json!({
                "kind": "mlflow-artifacts",
                "tracking": env_spec::redact::redact_url(&tracking),
                "uri": text,
            }));
            let text = text.to_string();
            fetch_cached(
                cache,
                settings,
                &reporter,
                &key,
                &shown,
                None,
                || async move { Ok(text) },
            )
            .await
        }
    }
}

/// An alias, `latest` or stage: online, ask the registry and remember the answer; offline (or
/// with the server unreachable), use the last answer with a warning.
async fn resolve_moving(
    settings: &SourceSettings,
    cache: &Cache,
    reporter: &Arc<dyn Reporter>,
    registry: &str,
    name: &str,
    selector: &Selector,
    shown: &str,
) -> Result<(String, Option<SourceWarning>), SourceError> {
    let refs = cache.bucket(MODELS_BUCKET)?.join("refs");
    let ref_path = refs.join(format!(
        "{}.json",
        key(&serde_json::json!({
            "registry": env_spec::redact::redact_url(registry),
            "name": name,
            "selector": format!("{selector:?}"),
        }))
    ));
    let last = || -> Option<Ref> { serde_json::from_slice(&fs_err::read(&ref_path).ok()?).ok() };
    if settings.offline {
        return match last() {
            Some(r) => Ok((
                r.version.clone(),
                Some(SourceWarning::OfflineLastResolution {
                    name: name.to_string(),
                    uri: shown.to_string(),
                    version: r.version,
                    age_seconds: env_cache::unix_now().saturating_sub(r.resolved),
                }),
            )),
            None => Err(SourceError::OfflineNotCached {
                uri: shown.to_string(),
            }),
        };
    }
    let client = mlflow::Client::new(settings, Arc::clone(reporter))?;
    let version = match selector {
        Selector::Alias(alias) => client.version_by_alias(registry, name, alias).await?,
        Selector::Latest => client.latest_version(registry, name, None).await?,
        Selector::Stage(stage) => client.latest_version(registry, name, Some(stage)).await?,
        Selector::Version(version) => version.clone(),
    };
    fs_err::create_dir_all(&refs).map_err(|source| SourceError::Write {
        path: refs.clone(),
        source,
    })?;
    let record = Ref {
        uri: shown.to_string(),
        name: name.to_string(),
        version: version.clone(),
        resolved: env_cache::unix_now(),
    };
    // Serialising a struct of strings cannot fail.
    let bytes = serde_json::to_vec_pretty(&record).expect("a Ref serialises");
    env_cache::write_atomic(&ref_path, &bytes)?;
    Ok((version, None))
}

/// A short, stable key for a canonical JSON description of a source.
fn key(value: &serde_json::Value) -> String {
    let digest = sha2::Sha256::digest(value.to_string().as_bytes());
    digest[..16].iter().fold(String::new(), |mut out, byte| {
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{byte:02x}"));
        out
    })
}

/// MLflow's `append_to_uri_path`.
fn join_uri(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_input() {
        let base = serde_json::json!({"kind": "model-version", "registry": "http://h", "name": "iris", "version": "1", "path": ""});
        let k = key(&base);
        assert_eq!(k.len(), 32);
        for (field, value) in [
            ("registry", "http://g"),
            ("name", "Iris"),
            ("version", "2"),
            ("path", "sub"),
        ] {
            let mut other = base.clone();
            other[field] = serde_json::json!(value);
            assert_ne!(key(&other), k, "{field}");
        }
    }

    #[tokio::test]
    async fn offline_without_cache_is_a_clear_error() {
        let temp = tempfile::tempdir().unwrap();
        let cache = Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let settings = SourceSettings {
            tracking_uri: Some("http://127.0.0.1:9".into()),
            offline: true,
            ..SourceSettings::default()
        };
        for uri in [
            "models:/iris/1",
            "models:/iris@champion",
            "runs:/abc/model",
            "s3://bucket/iris",
            "gs://bucket/iris",
            "wasbs://models@acct.blob.core.windows.net/iris",
            "abfss://fs@acct.dfs.core.windows.net/iris",
        ] {
            let error = resolve(uri, &settings, &cache, Arc::new(crate::NoReporter))
                .await
                .unwrap_err();
            assert!(
                matches!(error, SourceError::OfflineNotCached { .. }),
                "{uri}: {error:?}"
            );
        }
        let error = resolve(
            "models:/iris/1",
            &SourceSettings::default(),
            &cache,
            Arc::new(crate::NoReporter),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, SourceError::NoServer { .. }), "{error:?}");
    }
}
