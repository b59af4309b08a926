//! `gs://`, `wasbs://` and `abfss://` model URIs against real emulators on 127.0.0.1
//! (`fake-gcs-server` from PyPI, Azurite from npm), filled by MLflow's own artifact
//! repositories (`GCSArtifactRepository`, `AzureBlobArtifactRepository`): the model scores
//! with MLflow's exact output, is downloaded once, works `--offline`, and an MLflow server
//! whose artifact root is in the bucket hands out URIs that are read directly. Faults each get
//! a one-screen error that names the URI and never shows a secret.

use crate::common::{TestContext, describe, fixture, repo_root, stderr};
use crate::registry::{MlflowServer, assert_predicts, downloaded, predict, run_id_of};
use crate::servers::{Azurite, FakeGcs, cloud_python};

/// Uploads directory `argv[2]` to the artifact URI `argv[1]` with MLflow's own repository
/// for its scheme; creates the bucket or container first if it is missing.
const UPLOAD: &str = r#"
import os, sys
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
uri, src = sys.argv[1], sys.argv[2]
if uri.startswith("gs://"):
    from google.cloud import storage
    client = storage.Client()
    bucket = uri[5:].split("/")[0]
    if client.lookup_bucket(bucket) is None:
        client.create_bucket(bucket)
else:
    from azure.storage.blob import BlobServiceClient
    service = BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])
    container = service.get_container_client(uri.split("://")[1].split("@")[0])
    if not container.exists():
        container.create_container()
get_artifact_repository(uri).log_artifacts(src)
"#;

fn upload(uri: &str, dir: &std::path::Path, env: &[(&str, String)]) {
    cloud_python(UPLOAD, &[uri, dir.to_str().unwrap()], env);
}

/// The registry's runs log with MLflow's client from the cloud venv (which has the GCS and
/// Azure libraries), so the artifacts land in the bucket the server names.
fn fill_registry(server: &MlflowServer, env: &[(&str, String)]) -> String {
    let mut env = env.to_vec();
    env.push(("MLFLOW_TRACKING_URI", server.uri()));
    run_id_of(&cloud_python(
        crate::registry::FILL,
        &[fixture("sklearn-iris").to_str().unwrap()],
        &env,
    ))
}

fn context(env: &[(&str, String)]) -> TestContext {
    let mut ctx = TestContext::new().online();
    for (key, value) in env {
        ctx = ctx.env(key, value.clone());
    }
    ctx
}

#[track_caller]
fn assert_one_screen(output: &std::process::Output, code: i32, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
    let text = stderr(output);
    assert!(text.lines().count() <= 8, "not one screen:\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn pypi_gs_uris_and_a_gcs_backed_registry_score_like_mlflow() {
    let gcs = FakeGcs::start();
    let env = gcs.env();
    upload("gs://models/iris/v1", &fixture("sklearn-iris"), &env);
    upload(
        "gs://models/notes",
        &repo_root().join("fixtures/inputs/sklearn-iris"),
        &env,
    );
    let ctx = context(&env);

    let direct = predict(&ctx, "gs://models/iris/v1", &[]);
    assert_predicts(&direct);
    assert!(
        stderr(&direct).starts_with("Downloaded `gs://models/iris/v1`\n"),
        "{}\n{}",
        describe(&direct),
        gcs.log()
    );
    // Immutable: the second use and `--offline` use the cached copy, without a word.
    let again = predict(&ctx, "gs://models/iris/v1/", &[]);
    assert_predicts(&again);
    assert_eq!(stderr(&again), "", "{}", describe(&again));
    let offline = predict(&ctx, "gs://models/iris/v1", &["--offline"]);
    assert_predicts(&offline);
    assert_eq!(stderr(&offline), "", "{}", describe(&offline));
    assert_eq!(downloaded(&ctx).len(), 1);

    let not_model = ctx
        .command()
        .args(["inspect", "gs://models/notes"])
        .output()
        .unwrap();
    assert_one_screen(
        &not_model,
        1,
        &[
            "No MLflow model at `gs://models/notes`",
            "no `MLmodel` among",
        ],
    );
    let missing = ctx
        .command()
        .args(["inspect", "gs://models/nope"])
        .output()
        .unwrap();
    assert_one_screen(
        &missing,
        1,
        &["No MLflow model at `gs://models/nope`", "nothing is there"],
    );
    // (A missing bucket is not checked here: fake-gcs-server answers its XML listing with
    // 500 where GCS answers 404, and object_store retries a 500 for a while.)
    assert_eq!(downloaded(&ctx).len(), 1, "failures cache nothing");

    // An MLflow server whose artifact root is in the bucket (not proxied): the registry and
    // the run hand out `gs://` URIs, which are read directly, as MLflow's client does.
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = MlflowServer::start_with_env(
        &[
            "--no-serve-artifacts",
            "--default-artifact-root",
            "gs://models/mlflow",
        ],
        &env_refs,
    );
    let run_id = fill_registry(&server, &env);
    let ctx = ctx.env("MLFLOW_TRACKING_URI", server.uri());
    let registered = predict(&ctx, "models:/iris/2", &[]);
    assert_predicts(&registered);
    assert!(
        stderr(&registered).starts_with(&format!(
            "Downloaded `models:/iris/2` (version 2) from `gs://models/mlflow/0/{run_id}/artifacts/model`\n"
        )),
        "{}",
        describe(&registered)
    );
    let run = predict(&ctx, &format!("runs:/{run_id}/model"), &[]);
    assert_predicts(&run);
    assert!(
        stderr(&run).starts_with(&format!(
            "Downloaded `runs:/{run_id}/model` from `gs://models/mlflow/0/{run_id}/artifacts/model`\n"
        )),
        "{}",
        describe(&run)
    );
}

/// A service account key `object_store` cannot use: refused at once, in one screen naming the
/// setting, and the key never appears, `-vv` included. No server needed.
#[test]
fn gcs_unusable_service_account_key_is_refused_without_printing_it() {
    let ctx = TestContext::new().online();
    let secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDsecretbody";
    let key = ctx.temp.path().join("key.json");
    fs_err::write(
        &key,
        serde_json::json!({
            "type": "service_account",
            "client_email": "ci@project.iam.gserviceaccount.com",
            "private_key_id": "0123",
            "private_key": format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
        })
        .to_string(),
    )
    .unwrap();
    let ctx = ctx.env("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap());
    for verbose in [None, Some("-vv")] {
        let output = ctx
            .command()
            .args(verbose)
            .args(["inspect", "gs://models/iris"])
            .output()
            .unwrap();
        let all = describe(&output);
        assert!(!all.contains(secret), "{all}");
        assert!(!all.contains("secretbody"), "{all}");
        if verbose.is_none() {
            // The key file is the user's to fix (exit 1), and nothing was sent, so the
            // message names the file and the key, not the network.
            assert_one_screen(
                &output,
                1,
                &[
                    "Failed to get the model `gs://models/iris`",
                    &format!(
                        "The Google Cloud Storage client cannot be set up with the credentials file `{}`",
                        key.display()
                    ),
                    "its private key was rejected (base64 decode error",
                    "gcloud iam service-accounts keys create",
                ],
            );
            assert!(!all.contains("Check the network"), "{all}");
        }
    }
}

#[test]
fn pypi_azure_uris_and_an_azure_backed_registry_score_like_mlflow() {
    let azurite = Azurite::start();
    let env = vec![(
        "AZURE_STORAGE_CONNECTION_STRING",
        azurite.connection_string(Azurite::KEY),
    )];
    let blob = "wasbs://models@devstoreaccount1.blob.core.windows.net/iris/v1";
    upload(blob, &fixture("sklearn-iris"), &env);
    let ctx = context(&env);

    let direct = predict(&ctx, blob, &[]);
    assert_predicts(&direct);
    assert!(
        stderr(&direct).starts_with(&format!("Downloaded `{blob}`\n")),
        "{}\n{}",
        describe(&direct),
        azurite.log()
    );
    // The same files through the Data Lake form (a file system is a container of the same
    // account): the same cache entry, so nothing is downloaded.
    let lake = predict(
        &ctx,
        "abfss://models@devstoreaccount1.dfs.core.windows.net/iris/v1",
        &[],
    );
    assert_predicts(&lake);
    assert_eq!(stderr(&lake), "", "{}", describe(&lake));
    let offline = predict(&ctx, blob, &["--offline"]);
    assert_predicts(&offline);
    assert_eq!(stderr(&offline), "", "{}", describe(&offline));
    assert_eq!(downloaded(&ctx).len(), 1);

    let missing = ctx
        .command()
        .args([
            "inspect",
            "wasbs://nocontainer@devstoreaccount1.blob.core.windows.net/iris",
        ])
        .output()
        .unwrap();
    assert_one_screen(
        &missing,
        1,
        &[
            "Listing `wasbs://nocontainer@devstoreaccount1.blob.core.windows.net/iris` failed",
            "404",
            "hint: Check the container, the account and the path",
        ],
    );

    // A wrong key: 403, the credentials hint, and neither key nor connection string shown.
    let wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let wrong = context(&[(
        "AZURE_STORAGE_CONNECTION_STRING",
        azurite.connection_string(wrong_key),
    )]);
    for verbose in [None, Some("-vv")] {
        let output = wrong
            .command()
            .args(verbose)
            .args(["inspect", blob])
            .output()
            .unwrap();
        let all = describe(&output);
        assert!(!all.contains(wrong_key), "{all}");
        assert!(!all.contains("V3JvbmdLZXlX"), "{all}");
        if verbose.is_none() {
            assert_one_screen(
                &output,
                1,
                &[
                    &format!("Listing `{blob}` failed"),
                    "403",
                    "hint: The store refused the credentials: check `AZURE_STORAGE_CONNECTION_STRING`",
                ],
            );
        }
    }

    // An MLflow server whose artifact root is a container: `wasbs://` download URIs.
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = MlflowServer::start_with_env(
        &[
            "--no-serve-artifacts",
            "--default-artifact-root",
            "wasbs://mlflow@devstoreaccount1.blob.core.windows.net/runs",
        ],
        &env_refs,
    );
    upload(
        "wasbs://mlflow@devstoreaccount1.blob.core.windows.net/placeholder",
        &repo_root().join("fixtures/inputs/sklearn-iris"),
        &env,
    );
    let run_id = fill_registry(&server, &env);
    let ctx = ctx.env("MLFLOW_TRACKING_URI", server.uri());
    let registered = predict(&ctx, "models:/iris@champion", &[]);
    assert_predicts(&registered);
    assert!(
        stderr(&registered).starts_with(&format!(
            "Downloaded `models:/iris@champion` (version 1) from `wasbs://mlflow@devstoreaccount1.blob.core.windows.net/runs/0/{run_id}/artifacts/model`\n"
        )),
        "{}",
        describe(&registered)
    );
}
