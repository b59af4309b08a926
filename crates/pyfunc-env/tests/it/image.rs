//! `image`: the sklearn fixture's environment (Python from the local conda channel, packages
//! from PyPI) and model as an OCI image, pushed to a real registry (Debian's
//! `docker-registry` on 127.0.0.1), read back with `skopeo`, and run with `podman`: MLflow's
//! answers on `/ping` and `/invocations`, also with a read-only root filesystem as uid 4242.
//!
//! The base image is made here from this machine's own glibc files (the dynamic loader, libc
//! and the libraries the test channel's Python links to): no public registry is reachable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, describe, fixture, json, pyfunc_env_snapshot, repo_root, stderr};
use crate::pack::channel_url;
use crate::run::{KillOnDrop, free_port, http};

/// podman needs two settings in this sandbox (shared/notes/containers-for-tests.md): runc
/// instead of crun, and no default ulimits.
fn containers_conf() -> PathBuf {
    let path = env_test::target_dir().join("image-test-containers.conf");
    if !path.is_file() {
        fs_err::write(&path, "[containers]\ndefault_ulimits = []\n").unwrap();
    }
    path
}

fn tool(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env("CONTAINERS_CONF", containers_conf());
    command
}

fn podman() -> Command {
    let mut command = tool("podman");
    command.args(["--runtime", "runc"]);
    command
}

fn checked(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}\n{}",
        describe(&output)
    );
    output
}

/// A `docker-registry` on a free loopback port with its own storage directory.
struct Registry {
    _process: KillOnDrop,
    port: u16,
    data: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let data = dir.join("registry-data");
        fs_err::create_dir_all(&data).unwrap();
        let config = dir.join("registry.yml");
        fs_err::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                data.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                fs_err::File::create(dir.join("registry.log"))
                    .unwrap()
                    .into_file(),
            )
            .spawn()
            .unwrap();
        let process = KillOnDrop(child);
        let started = Instant::now();
        while http(port, "GET", "/v2/", "", b"").map_or(true, |r| r.status != 200) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            _process: process,
            port,
            data,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The blobs the registry stores (layers, configs and manifests), by digest.
    fn blobs(&self) -> std::collections::BTreeSet<String> {
        let root = self.data.join("docker/registry/v2/blobs/sha256");
        let mut out = std::collections::BTreeSet::new();
        for prefix in fs_err::read_dir(&root).into_iter().flatten().flatten() {
            for blob in fs_err::read_dir(prefix.path()).unwrap().flatten() {
                if blob.path().join("data").is_file() {
                    out.insert(format!("sha256:{}", blob.file_name().to_string_lossy()));
                }
            }
        }
        out
    }
}

/// The shared libraries pyenv's CPython 3.11.7 (what the test channel's `python` package is
/// made of) and the PyPI wheels need from the system, with the dynamic loader.
fn host_libraries() -> Vec<PathBuf> {
    let python = env_test::pyenv_root().unwrap().join("versions/3.11.7");
    let mut objects = vec![python.join("bin/python3.11")];
    for entry in fs_err::read_dir(python.join("lib/python3.11/lib-dynload")).unwrap() {
        objects.push(entry.unwrap().path());
    }
    let output = checked(Command::new("ldd").args(&objects));
    let mut libraries: Vec<PathBuf> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split("=> ").nth(1)?.split(' ').next())
        .filter(|path| path.starts_with('/') && !path.contains(".pyenv"))
        .map(PathBuf::from)
        .collect();
    for name in [
        "ld-linux-x86-64.so.2",
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libz.so.1",
    ] {
        libraries.push(Path::new("/lib/x86_64-linux-gnu").join(name));
    }
    libraries.sort();
    libraries.dedup();
    libraries
}

/// An OCI image layout of a minimal glibc base (no shell), built once per target directory:
/// `target/image-test-base/`.
fn base_layout() -> PathBuf {
    let dir = env_test::target_dir().join("image-test-base");
    if dir.join("index.json").is_file() {
        return dir;
    }
    let lock = fs_err::File::create(env_test::target_dir().join("image-test-base.lock")).unwrap();
    lock.file().lock().unwrap();
    if dir.join("index.json").is_file() {
        return dir;
    }
    let staging = tempfile::tempdir_in(env_test::target_dir()).unwrap();
    let rootfs = staging.path().join("rootfs");
    let libdir = rootfs.join("usr/lib/x86_64-linux-gnu");
    fs_err::create_dir_all(&libdir).unwrap();
    for library in host_libraries() {
        let name = library.file_name().unwrap();
        // The file itself, under its soname (following the host's symlinks).
        fs_err::copy(&library, libdir.join(name)).unwrap();
    }
    fs_err::create_dir_all(rootfs.join("usr/lib64")).unwrap();
    fs_err::os::unix::fs::symlink(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        rootfs.join("usr/lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    for (link, target) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        fs_err::os::unix::fs::symlink(target, rootfs.join(link)).unwrap();
    }
    fs_err::create_dir_all(rootfs.join("etc")).unwrap();
    fs_err::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    fs_err::write(rootfs.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    fs_err::create_dir_all(rootfs.join("tmp")).unwrap();
    let layer = staging.path().join("layer.tar.gz");
    checked(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .args(["--mtime=@0", "--mode=u+w,go-w", "-C"])
            .arg(&rootfs)
            .arg("-czf")
            .arg(&layer)
            .arg("."),
    );
    let sha256 = |shell: &str| {
        let output = checked(Command::new("sh").args(["-c", shell]));
        let text = String::from_utf8(output.stdout).unwrap();
        format!("sha256:{}", text.split(' ').next().unwrap())
    };
    let layer_digest = sha256(&format!("sha256sum {}", layer.display()));
    let diff_id = sha256(&format!("gzip -dc {} | sha256sum", layer.display()));
    let layer_size = fs_err::metadata(&layer).unwrap().len();
    let layout = staging.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs_err::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let file = staging.path().join("blob");
        fs_err::write(&file, bytes).unwrap();
        let digest = sha256(&format!("sha256sum {}", file.display()));
        fs_err::rename(&file, blobs.join(&digest[7..])).unwrap();
        digest
    };
    fs_err::rename(&layer, blobs.join(&layer_digest[7..])).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": "pyfunc-env tests: host glibc" }],
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size }],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    fs_err::write(
        layout.join("index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": "glibc" },
            }],
        })
        .to_string(),
    )
    .unwrap();
    fs_err::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let _ = fs_err::remove_dir_all(&dir);
    fs_err::rename(&layout, &dir).unwrap();
    dir
}

/// `pyfunc-env image MODEL` with the sklearn environment's build flags and `extra`.
fn image(ctx: &TestContext, model: &Path, extra: &[&str]) -> Output {
    ctx.command()
        .arg("image")
        .arg(model)
        .args(["--env-manager", "virtualenv", "--python-source", "conda"])
        .args(["--mirror", &format!("conda-forge={}", channel_url())])
        .args(extra)
        .output()
        .unwrap()
}

/// An image in podman's storage, removed when dropped (each run's registry port makes a new
/// name, so they would pile up).
struct PodmanImage(String);

impl Drop for PodmanImage {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "-f", &self.0]).output();
    }
}

/// A container, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.0]).output();
    }
}

fn logs(name: &str) -> String {
    let output = podman().args(["logs", name]).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `image` with `podman run` (`extra` flags), waits for `/ping`, posts every input MLflow
/// accepts and checks MLflow's bytes, then stops it (SIGTERM) and checks it stopped by itself.
fn run_and_score(image: &str, extra: &[&str]) {
    let port = free_port();
    let name = format!("pyfunc-env-test-{port}");
    let container = Container(name.clone());
    checked(
        podman()
            .args(["run", "-d", "--network=host", "--name", &name])
            .args(["-e", &format!("PORT={port}")])
            .args(extra)
            .arg(image),
    );
    let started = Instant::now();
    loop {
        if http(port, "GET", "/ping", "", b"").is_ok_and(|r| r.status == 200) {
            break;
        }
        let state = podman()
            .args(["inspect", "-f", "{{.State.Running}}", &name])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&state.stdout).trim() == "true",
            "the container stopped before answering\n{}",
            logs(&name)
        );
        assert!(
            started.elapsed() < Duration::from_mins(3),
            "no answer on /ping\n{}",
            logs(&name)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let version = http(port, "GET", "/version", "", b"").unwrap();
    assert_eq!(
        (version.status, version.body.as_slice()),
        (200, &b"3.17.2"[..])
    );
    let inputs = repo_root().join("fixtures/inputs/sklearn-iris");
    let expected = repo_root().join("fixtures/expected/sklearn-iris");
    for &(file, content_type, stem) in crate::common::SKLEARN_SERVED_INPUTS {
        let body = fs_err::read(inputs.join(file)).unwrap();
        let response = http(port, "POST", "/invocations", content_type, &body).unwrap();
        let want = fs_err::read(expected.join(format!("{stem}.out"))).unwrap();
        assert!(
            response.status == 200 && response.body == want,
            "{file}: the container answered {}\n{}\nMLflow wrote\n{}",
            response.status,
            String::from_utf8_lossy(&response.body),
            String::from_utf8_lossy(&want)
        );
    }
    // Rejected input: 400 and MLflow's JSON error.
    let body = fs_err::read(inputs.join("missing_column.json")).unwrap();
    let response = http(port, "POST", "/invocations", "application/json", &body).unwrap();
    assert_eq!(
        response.status,
        400,
        "{}",
        String::from_utf8_lossy(&response.body)
    );

    // SIGTERM (podman stop) ends the server by itself, well before podman's SIGKILL.
    checked(podman().args(["stop", "-t", "60", &name]));
    let code = checked(podman().args(["inspect", "-f", "{{.State.ExitCode}}", &name]));
    let code = String::from_utf8(code.stdout).unwrap();
    assert!(
        matches!(code.trim(), "0" | "143"),
        "exit code {code}\n{}",
        logs(&name)
    );
    assert!(
        logs(&name).contains("Finished server process"),
        "{}",
        logs(&name)
    );
    drop(container);
}

fn layer_actions(report: &serde_json::Value) -> Vec<(String, String)> {
    report["push"]["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["role"].as_str().unwrap().to_string(),
                b["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
        .collect()
}

#[test]
fn pypi_image_of_the_sklearn_model_pushes_runs_and_scores_like_mlflow() {
    let ctx = TestContext::new().online();
    let registry = Registry::start(ctx.path());
    let host = registry.host();
    // The base in the registry, pushed by skopeo from the layout.
    let base = format!("{host}/base:glibc");
    checked(
        tool("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:glibc", base_layout().display()))
            .arg(format!("docker://{base}")),
    );
    let base_blobs = registry.blobs();
    let model = fixture("sklearn-iris");
    let layout = ctx.path().join("layout");
    let archive = ctx.path().join("image.tar");
    let target = format!("{host}/sklearn-iris:v1");
    let output = image(
        &ctx,
        &model,
        &[
            "-t",
            &target,
            "--base",
            &base,
            "--push",
            "--json",
            "--output",
            &format!("oci:{}", layout.display()),
            "--output",
            &format!("docker-archive:{}", archive.display()),
        ],
    );
    let report = json(&output);
    let digest = report["digest"].as_str().unwrap().to_string();
    let roles: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["base", "environment", "model"], "{report:#}");
    // The base layer was not uploaded: the registry mounted it from the base's repository.
    assert_eq!(
        layer_actions(&report),
        pairs(&[
            ("base", "mounted"),
            ("environment", "uploaded"),
            ("model", "uploaded"),
            ("config", "uploaded"),
        ]),
        "{report:#}"
    );
    assert_eq!(report["env_layer_cached"], false);

    // skopeo reads what was pushed and the layout: same digest, our labels and entrypoint.
    let inspect = checked(
        tool("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{target}")),
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    let labels = &inspected["Labels"];
    assert_eq!(labels["io.pyfunc-env.mlflow-version"], "3.17.2");
    assert_eq!(labels["io.pyfunc-env.env-key"], report["env_key"]);
    assert_eq!(labels["io.pyfunc-env.model-uri"], model.to_str().unwrap());
    let from_layout = checked(
        tool("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:v1", layout.display())),
    );
    let from_layout: serde_json::Value = serde_json::from_slice(&from_layout.stdout).unwrap();
    assert_eq!(from_layout["Digest"], digest.as_str());

    // podman pulls and runs it: MLflow's answers; then read-only, as another uid.
    let _pulled = PodmanImage(target.clone());
    checked(podman().args(["pull", "--quiet", "--tls-verify=false", &target]));
    run_and_score(&target, &[]);
    // The docker archive in place of the pulled image: `podman load` gives the same image
    // (its ID is the config's digest), read-only and as another uid.
    checked(podman().args(["rmi", "-f", &target]));
    checked(podman().arg("load").arg("--quiet").arg("-i").arg(&archive));
    let id = checked(podman().args(["image", "inspect", "-f", "{{.Id}}", &target]));
    assert_eq!(
        format!("sha256:{}", String::from_utf8(id.stdout).unwrap().trim()),
        report["config"]["digest"].as_str().unwrap()
    );
    run_and_score(&target, &["--read-only", "--user", "4242"]);
    // Every module the model's server imports comes from valid bytecode in the layer (the
    // environment's own, made valid for the layer's mtimes, or compiled for it): none is
    // compiled from source at each start, which a read-only root could not even cache.
    let verbose = checked(podman().args([
        "run",
        "--rm",
        "--read-only",
        "--user",
        "4242",
        "--entrypoint",
        "/opt/pyfunc-env/env/bin/python",
        &target,
        "-v",
        "-c",
        "import mlflow.pyfunc.scoring_server, sklearn.linear_model",
    ]));
    let verbose = String::from_utf8_lossy(&verbose.stderr);
    let from_bytecode = verbose
        .lines()
        .filter(|l| l.contains(" matches /opt/"))
        .count();
    let from_source: Vec<&str> = verbose
        .lines()
        .filter(|l| {
            l.contains("bytecode is stale")
                || (l.starts_with("# code object from") && !l.trim_end().ends_with(".pyc'"))
        })
        .collect();
    assert!(
        from_bytecode > 1000,
        "{from_bytecode} modules from bytecode"
    );
    assert!(from_source.is_empty(), "{from_source:#?}");

    // The same inputs again: the same image digest; nothing uploaded, the environment layer
    // from the cache.
    let again = json(&image(
        &ctx,
        &model,
        &["-t", &target, "--base", &base, "--push", "--json"],
    ));
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(again["env_layer_cached"], true);
    assert_eq!(again["push"]["uploaded_bytes"], 0, "{again:#}");

    // A new model version with the same environment: only its model layer and config go up,
    // as the registry's own storage shows (plus the manifest).
    let before = registry.blobs();
    let second = ctx.copy_fixture("sklearn-iris");
    fs_err::write(second.join("NOTES.txt"), "version 2\n").unwrap();
    let v2 = json(&image(
        &ctx,
        &second,
        &[
            "-t",
            &format!("{host}/sklearn-iris:v2"),
            "--base",
            &base,
            "--push",
            "--json",
        ],
    ));
    assert_eq!(v2["env_key"], report["env_key"]);
    assert_eq!(
        layer_actions(&v2),
        pairs(&[
            ("base", "present"),
            ("environment", "present"),
            ("model", "uploaded"),
            ("config", "uploaded"),
        ]),
        "{v2:#}"
    );
    let new: Vec<String> = registry.blobs().difference(&before).cloned().collect();
    let mut expected = vec![
        v2["layers"][2]["digest"].as_str().unwrap().to_string(),
        v2["config"]["digest"].as_str().unwrap().to_string(),
        v2["digest"].as_str().unwrap().to_string(),
    ];
    expected.sort();
    assert_eq!(new, expected);
    assert!(base_blobs.is_subset(&before));

    // `--compression zstd`: tar+zstd environment and model layers, the same digest when
    // written again from scratch, and podman pulls and runs the image.
    let zstd_target = format!("{host}/sklearn-iris:zstd");
    let mut zstd_digests = Vec::new();
    for _ in 0..2 {
        let _ = fs_err::remove_dir_all(ctx.cache_dir.join("images-v1/env-layers"));
        let zstd = json(&image(
            &ctx,
            &model,
            &[
                "-t",
                &zstd_target,
                "--base",
                &base,
                "--push",
                "--json",
                "--compression",
                "zstd",
            ],
        ));
        assert_eq!(zstd["env_layer_cached"], false);
        let types: Vec<(&str, &str)> = zstd["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["role"].as_str().unwrap(),
                    l["media_type"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            types,
            [
                ("base", "application/vnd.oci.image.layer.v1.tar+gzip"),
                ("environment", "application/vnd.oci.image.layer.v1.tar+zstd"),
                ("model", "application/vnd.oci.image.layer.v1.tar+zstd"),
            ]
        );
        // Not the gzip image's layers: the same tar (diff_id), compressed otherwise.
        assert_eq!(zstd["layers"][1]["diff_id"], report["layers"][1]["diff_id"]);
        assert_ne!(zstd["layers"][1]["digest"], report["layers"][1]["digest"]);
        zstd_digests.push(zstd["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(zstd_digests[0], zstd_digests[1]);
    let _zstd_pulled = PodmanImage(zstd_target.clone());
    checked(podman().args(["pull", "--quiet", "--tls-verify=false", &zstd_target]));
    let imported = checked(podman().args([
        "run",
        "--rm",
        "--read-only",
        "--entrypoint",
        "/opt/pyfunc-env/env/bin/python",
        &zstd_target,
        "-c",
        "import sklearn, mlflow; print(mlflow.__version__)",
    ]));
    assert_eq!(String::from_utf8_lossy(&imported.stdout).trim(), "3.17.2");
    let _ = stderr(&output);
}

/// An OCI layout whose one layer holds only `/etc/passwd`: no C library, no loader. With
/// `empty`, no layer at all (`scratch`).
fn layout_without_glibc(dir: &Path, empty: bool) -> PathBuf {
    let layout = dir.join(if empty { "scratch" } else { "no-glibc" });
    let blobs = layout.join("blobs/sha256");
    fs_err::create_dir_all(&blobs).unwrap();
    let sha256 = |file: &Path| {
        let output = checked(Command::new("sha256sum").arg(file));
        format!(
            "sha256:{}",
            String::from_utf8(output.stdout)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        )
    };
    let put = |bytes: &[u8]| {
        let file = dir.join("blob");
        fs_err::write(&file, bytes).unwrap();
        let digest = sha256(&file);
        fs_err::rename(&file, blobs.join(&digest[7..])).unwrap();
        digest
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    if !empty {
        let rootfs = dir.join("rootfs-no-glibc");
        fs_err::create_dir_all(rootfs.join("etc")).unwrap();
        fs_err::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/sbin/nologin\n").unwrap();
        let tar = dir.join("layer.tar");
        checked(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        let digest = sha256(&tar);
        let size = fs_err::metadata(&tar).unwrap().len();
        fs_err::rename(&tar, blobs.join(&digest[7..])).unwrap();
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": size,
        }));
        diff_ids.push(digest);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": layers,
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    fs_err::write(
        layout.join("index.json"),
        serde_json::json!({ "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
        }]})
        .to_string(),
    )
    .unwrap();
    layout
}

/// `image` of the small conda-mode model of `pack.rs` (local channel, offline).
fn conda_image(ctx: &TestContext, extra: &[&str]) -> Output {
    let model = crate::pack::conda_model(ctx);
    ctx.command()
        .arg("image")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(crate::common::mirror_args(&channel_url()))
        .args(extra)
        .output()
        .unwrap()
}

/// A base without glibc (one without a dynamic loader, and `scratch`): exit 1, one screen that
/// names the fix, and nothing written.
#[test]
fn a_base_without_glibc_is_refused_with_the_fix() {
    let ctx = TestContext::new();
    for empty in [false, true] {
        let layout = layout_without_glibc(ctx.path(), empty);
        let out = ctx.path().join("image.tar");
        let output = conda_image(
            &ctx,
            &[
                "-t",
                "localhost/m:v1",
                "--base",
                &format!("oci:{}", layout.display()),
                "--output",
                &format!("docker-archive:{}", out.display()),
            ],
        );
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let text = ctx.filter(&stderr(&output));
        let error = text
            .lines()
            .skip_while(|l| !l.starts_with("error:"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            error,
            format!(
                "error: Failed to write the image `localhost/m:v1`\n  Caused by: The base image `oci:{}` has no glibc (no dynamic loader `ld-linux*.so*`)\n\nhint: The environment's Python needs glibc from the base: use the default (`gcr.io/distroless/cc-debian12`) or any Debian/Ubuntu/UBI-based image with `--base`",
                ctx.filter(&layout.display().to_string())
            ),
            "{}",
            describe(&output)
        );
        assert!(!out.exists());
    }
}

/// A registry that is down: exit 2, the registry named and the fix; a registry that wants
/// credentials and gets none: exit 1 and how to log in.
#[test]
fn push_to_a_registry_that_is_down_names_it() {
    let ctx = TestContext::new().online();
    let port = free_port();
    let output = conda_image(
        &ctx,
        &[
            "-t",
            &format!("127.0.0.1:{port}/m:v1"),
            "--base",
            &format!("oci:{}:glibc", base_layout().display()),
            "--push",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "error: Failed to write the image `127.0.0.1:{port}/m:v1`\n  Caused by: Cannot reach the registry `127.0.0.1:{port}`\n"
        )) && text.contains("hint: Check that the registry is up and the name is right"),
        "{}",
        describe(&output)
    );
}

/// A registry that refuses every request (`401` with a Basic challenge), on a free port: what
/// a registry that rejects the credentials answers.
fn refusing_registry() -> u16 {
    refusing_registry_recording().0
}

/// [`refusing_registry`], keeping the `Authorization` header of every request.
fn refusing_registry_recording() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 4096];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
            recorded.lock().unwrap().push(
                request
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_string(),
            );
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"registry\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// A registry that refuses access: exit 1 before anything is built, the registry named, and
/// how to log in; with credentials given, the message says they were refused.
#[test]
fn push_to_a_registry_that_refuses_auth_says_how_to_log_in() {
    let ctx = TestContext::new().online();
    let port = refusing_registry();
    let base = format!("oci:{}:glibc", base_layout().display());
    let target = format!("127.0.0.1:{port}/m:v1");
    for (credentials, refused) in [
        (&[][..], "without credentials"),
        (
            &["--username", "me", "--password", "wrong"][..],
            "with the credentials given",
        ),
    ] {
        let mut args = vec!["-t", target.as_str(), "--base", base.as_str(), "--push"];
        args.extend_from_slice(credentials);
        let output = conda_image(&ctx, &args);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert_eq!(
            stderr(&output),
            format!(
                "error: Failed to write the image `{target}`\n  Caused by: The registry `127.0.0.1:{port}` refused access {refused}\n\nhint: Log in with `podman login` or `docker login` (their auth files are read, and `REGISTRY_AUTH_FILE`), or pass `--username` and `--password` (or `PYFUNC_ENV_REGISTRY_USERNAME` and `PYFUNC_ENV_REGISTRY_PASSWORD`)\n"
            ),
            "{}",
            describe(&output)
        );
        // Nothing was built.
        assert!(
            !ctx.cache_dir.join("envs-v1").exists()
                || fs_err::read_dir(ctx.cache_dir.join("envs-v1"))
                    .unwrap()
                    .next()
                    .is_none()
        );
    }
}

/// A directory of find-links wheels with an `mlflow` 3.17.2 that is only a name and a version:
/// `image` needs mlflow in the environment, and these tests compare layers offline, they do not
/// serve.
fn stand_in_mlflow_wheel(dir: &Path) -> PathBuf {
    let wheels = dir.join("stand-in-wheels");
    fs_err::create_dir_all(&wheels).unwrap();
    let python = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/bin/python3.11");
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "mlflow/__init__.py": "__version__ = '3.17.2'\n",
    "mlflow-3.17.2.dist-info/METADATA": "Metadata-Version: 2.1\nName: mlflow\nVersion: 3.17.2\n",
    "mlflow-3.17.2.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: pyfunc-env-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "mlflow-3.17.2.dist-info/entry_points.txt": "[console_scripts]\nmlflow = mlflow:main\n",
}
record = []
for name, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(text)}")
record.append("mlflow-3.17.2.dist-info/RECORD,,")
files["mlflow-3.17.2.dist-info/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(sys.argv[1] + "/mlflow-3.17.2-py3-none-any.whl", "w") as wheel:
    for name, text in files.items():
        wheel.writestr(zipfile.ZipInfo(name, (2000, 1, 1, 0, 0, 0)), text)
"#;
    checked(Command::new(python).args(["-c", script]).arg(&wheels));
    wheels
}

/// The bytes of a gzip-compressed layer blob in an OCI layout.
fn layer_bytes(layout: &Path, digest: &str) -> Vec<u8> {
    use std::io::Read as _;
    let file = fs_err::File::open(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// A local conda channel with `binpkg`, whose `lib/libbinpkg.so` (a real shared object) names
/// its prefix in a C string through a binary prefix placeholder, as conda-build packages do for
/// compiled-in paths: the installer writes the environment's path there, NUL-padded.
fn binary_placeholder_channel(dir: &Path) -> PathBuf {
    let channel = dir.join("binchan");
    let work = dir.join("binpkg-build");
    fs_err::create_dir_all(work.join("lib")).unwrap();
    let placeholder = format!("/{}", "placehold_".repeat(25));
    let source = work.join("binpkg.c");
    fs_err::write(
        &source,
        format!("const char binpkg_data[] = \"{placeholder}/share/binpkg\";\n"),
    )
    .unwrap();
    checked(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(work.join("lib/libbinpkg.so"))
            .arg(&source),
    );
    let python = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/bin/python3.11");
    let script = r#"
import hashlib, io, json, os, sys, tarfile
work, out, placeholder = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(os.path.join(work, "lib/libbinpkg.so"), "rb").read()
assert placeholder.encode() in data
info = {
    "info/index.json": {"name": "binpkg", "version": "1.0", "build": "0", "build_number": 0,
                        "depends": [], "subdir": "linux-64", "arch": "x86_64", "platform": "linux",
                        "timestamp": 1704067200000},
    "info/paths.json": {"paths_version": 1, "paths": [{
        "_path": "lib/libbinpkg.so", "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
        "size_in_bytes": len(data), "prefix_placeholder": placeholder, "file_mode": "binary"}]},
}
os.makedirs(os.path.join(out, "linux-64"), exist_ok=True)
os.makedirs(os.path.join(out, "noarch"), exist_ok=True)
with tarfile.open(os.path.join(out, "linux-64/binpkg-1.0-0.tar.bz2"), "w:bz2") as tar:
    def add(name, content, mode=0o644):
        member = tarfile.TarInfo(name)
        member.size, member.mode, member.mtime = len(content), mode, 946684800
        tar.addfile(member, io.BytesIO(content))
    add("lib/libbinpkg.so", data, 0o755)
    for name, value in info.items():
        add(name, json.dumps(value).encode())
    add("info/files", b"lib/libbinpkg.so\n")
    add("info/has_prefix", f"{placeholder} binary lib/libbinpkg.so\n".encode())
"#;
    checked(
        Command::new(python)
            .args(["-c", script])
            .arg(&work)
            .arg(&channel)
            .arg(&placeholder),
    );
    env_test::index(&channel).unwrap();
    channel
}

/// The same environment built in two caches at different paths (one long enough that uv
/// writes its `/bin/sh` form of console scripts), and pulled from a remote cache into a third
/// (issue 21), gives the same environment layer, and no byte of any cache's path is in it:
/// `_sysconfigdata`, `python3.11-config`, console scripts, bytecode's `co_filename`, `RECORD`
/// hashes, conda-meta's package-cache paths, and the builder's path that a pulled
/// environment's compiled libraries keep (a conda binary prefix placeholder).
#[test]
fn the_environment_layer_is_the_same_from_caches_at_different_paths() {
    let ctx = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let stand_in = stand_in_mlflow_wheel(ctx.path());
    let binchan = binary_placeholder_channel(ctx.path());
    let conda = format!(
        "name: test\nchannels:\n- conda-forge\n- file://{}\ndependencies:\n- python=3.11.7\n- numpy=1.26\n- tinypkg\n- binpkg\n- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - --find-links file://{}\n  - wheel==0.45.1\n  - mlflow==3.17.2\n",
        binchan.display(),
        wheels.display(),
        stand_in.display()
    );
    let model = ctx.model("m", &[("conda.yaml", &conda)]);
    let base = format!("oci:{}:glibc", base_layout().display());
    let remote = format!("file://{}", ctx.path().join("remote").display());
    let long = format!("b/{}/cache", "a-much-longer-cache-directory".repeat(4));
    // `a` builds and pushes to the remote; `long` builds on its own; `c` pulls from the
    // remote, with a channel that leads nowhere (any build would fail).
    let agents = [
        ("a", channel_url(), true),
        (long.as_str(), channel_url(), false),
        ("c/pulled", "file:///nonexistent/channel".to_string(), true),
    ];
    let mut layers = Vec::new();
    for (cache, channel, shared) in agents {
        let cache = ctx.path().join(cache);
        let layout = ctx.path().join(format!("layout-{}", layers.len()));
        let mut command = ctx.command();
        command
            .env("PYFUNC_ENV_CACHE_DIR", &cache)
            .arg("image")
            .arg(&model)
            .args(["--env-manager", "conda"])
            .args(crate::common::mirror_args(&channel))
            .args(["-t", "localhost/m:v1", "--base", &base, "--json"])
            .arg("--output")
            .arg(format!("oci:{}", layout.display()));
        if shared {
            command.env("PYFUNC_ENV_REMOTE_CACHE", &remote);
        }
        let output = command.output().unwrap();
        let report = json(&output);
        assert_eq!(report["layers"][1]["role"], "environment", "{report:#}");
        let digest = report["layers"][1]["digest"].as_str().unwrap().to_string();
        let bytes = layer_bytes(&layout, &digest);
        for needle in [cache.clone(), ctx.path().join("a")] {
            let needle = needle.to_string_lossy().into_owned();
            let found = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_bytes());
            assert!(
                found.is_none(),
                "the layer of `{}` names `{needle}`: {}",
                cache.display(),
                bytes[found.unwrap().saturating_sub(200)..found.unwrap() + needle.len() + 100]
                    .escape_ascii()
            );
        }
        layers.push(digest);
    }
    // What makes the pulled case: `c`'s environment came from the remote, and its compiled
    // library still names `a`'s path (the pull rewrites only text files).
    let pulled: Vec<_> = fs_err::read_dir(ctx.path().join("c/pulled/envs-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    let metadata = fs_err::read_to_string(pulled[0].join(".pyfunc-env/metadata.json")).unwrap();
    assert!(metadata.contains("\"remote\""), "not pulled: {metadata}");
    let library = fs_err::read(pulled[0].join("lib/libbinpkg.so")).unwrap();
    let builder = ctx.path().join("a").to_string_lossy().into_owned();
    assert!(
        library
            .windows(builder.len())
            .any(|w| w == builder.as_bytes()),
        "the pulled `lib/libbinpkg.so` does not name the builder's path"
    );
    assert_eq!(layers[0], layers[1]);
    assert_eq!(layers[0], layers[2]);
}

/// Credentials from a Docker credential helper: `credHelpers` names one for the registry, and
/// `credsStore` one for every other registry; each is `docker-credential-NAME get` on `PATH`,
/// asked with the registry's name on stdin. The registry receives what the helper answered.
#[test]
fn credentials_come_from_docker_credential_helpers() {
    let ctx = TestContext::new().online();
    let (port, seen) = refusing_registry_recording();
    let registry = format!("127.0.0.1:{port}");
    let bin = ctx.path().join("helpers");
    fs_err::create_dir_all(&bin).unwrap();
    for (name, user) in [("fake", "from-fake"), ("store", "from-store")] {
        let script = bin.join(format!("docker-credential-{name}"));
        fs_err::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\necho \"$server\" >> {}/asked-{name}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"s3cret\"}}' \"$server\"\n",
                ctx.path().display()
            ),
        )
        .unwrap();
        fs_err::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let docker_config = ctx.path().join("docker");
    fs_err::create_dir_all(&docker_config).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let base = format!("oci:{}:glibc", base_layout().display());
    for (config, helper, user) in [
        (
            format!(r#"{{"credsStore": "store", "credHelpers": {{"{registry}": "fake"}}}}"#),
            "fake",
            "from-fake",
        ),
        (
            r#"{"credsStore": "store"}"#.to_string(),
            "store",
            "from-store",
        ),
    ] {
        fs_err::write(docker_config.join("config.json"), config).unwrap();
        let model = crate::pack::conda_model(&ctx);
        let output = ctx
            .command()
            .env("PATH", &path)
            .env("DOCKER_CONFIG", &docker_config)
            .arg("image")
            .arg(&model)
            .args(["--env-manager", "conda"])
            .args(crate::common::mirror_args(&channel_url()))
            .args(["-t", &format!("{registry}/m:v1"), "--base", &base, "--push"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(
            stderr(&output).contains("refused access with the credentials given"),
            "{}",
            describe(&output)
        );
        let asked = fs_err::read_to_string(ctx.path().join(format!("asked-{helper}"))).unwrap();
        assert_eq!(asked.trim(), registry);
        let basic = checked(
            Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' '{user}:s3cret' | base64")),
        );
        let expected = format!("Basic {}", String::from_utf8(basic.stdout).unwrap().trim());
        assert!(
            seen.lock().unwrap().contains(&expected),
            "{expected} not in {:?}",
            seen.lock().unwrap()
        );
        fs_err::remove_file(ctx.path().join(format!("asked-{helper}"))).unwrap();
    }
}

/// One model of each MLflow major in `fixtures/matrix/` as an image (Python from the local
/// conda channel, packages from PyPI, `--install-mlflow` where the matrix's environment needs
/// it), pushed to one registry on one base, run with podman as any uid on a read-only root:
/// every endpoint and every `/invocations` case as MLflow's own server answered it.
#[test]
fn pypi_images_of_each_mlflow_major_score_like_mlflow() {
    let ctx = TestContext::new().online();
    let registry = Registry::start(ctx.path());
    let host = registry.host();
    let base = format!("{host}/base:glibc");
    checked(
        tool("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:glibc", base_layout().display()))
            .arg(format!("docker://{base}")),
    );
    let root = repo_root();
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(root.join("fixtures/matrix/index.json")).unwrap())
            .unwrap();
    let mut differences = Vec::new();
    for (writer, name) in [
        ("1.30.1", "custom-pyfunc"),
        ("2.22.5", "sklearn-iris"),
        ("3.17.2", "custom-pyfunc"),
    ] {
        let model = index["writers"][writer]["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap();
        let dir = root.join(model["dir"].as_str().unwrap());
        let env_args: Vec<&str> = model["pyfunc_env_args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let target = format!("{host}/{name}-{}:v1", writer.replace('.', "-"));
        let mut args = vec!["-t", target.as_str(), "--base", base.as_str(), "--push"];
        args.extend_from_slice(&env_args);
        let output = image(&ctx, &dir, &args);
        assert!(
            output.status.success(),
            "{writer} {name}\n{}",
            describe(&output)
        );
        let _pulled = PodmanImage(target.clone());
        checked(podman().args(["pull", "--quiet", "--tls-verify=false", &target]));

        let port = free_port();
        let container_name = format!("pyfunc-env-test-{port}");
        let container = Container(container_name.clone());
        checked(
            podman()
                .args(["run", "-d", "--network=host", "--name", &container_name])
                .args([
                    "-e",
                    &format!("PORT={port}"),
                    "--read-only",
                    "--user",
                    "4242",
                ])
                .arg(&target),
        );
        let started = Instant::now();
        while !http(port, "GET", "/ping", "", b"").is_ok_and(|r| r.status == 200) {
            assert!(
                started.elapsed() < Duration::from_mins(3),
                "{writer} {name}: no answer on /ping\n{}",
                logs(&container_name)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let inputs = root.join(model["inputs"].as_str().unwrap());
        let expected = root.join(model["expected"].as_str().unwrap());
        let expected_body = |record: &serde_json::Value| {
            fs_err::read(expected.join(record["body"].as_str().unwrap())).unwrap()
        };
        for endpoint in model["serve"]["endpoints"].as_array().unwrap() {
            let path = endpoint["path"].as_str().unwrap();
            let answer = crate::conformance::http(port, "GET", path, "", b"");
            if let Err(d) = crate::conformance::compare(endpoint, &expected_body(endpoint), answer)
            {
                differences.push(format!("{writer} {name}: GET {path}: {d}"));
            }
        }
        for invocation in model["serve"]["invocations"].as_array().unwrap() {
            let file = invocation["input"].as_str().unwrap();
            let content_type = invocation["content_type"].as_str().unwrap();
            let body = fs_err::read(inputs.join(file)).unwrap();
            let answer =
                crate::conformance::http(port, "POST", "/invocations", content_type, &body);
            if let Err(d) =
                crate::conformance::compare(invocation, &expected_body(invocation), answer)
            {
                differences.push(format!(
                    "{writer} {name}: POST /invocations {file} ({content_type}): {d}\n{}",
                    logs(&container_name)
                ));
            }
        }
        drop(container);
    }
    assert!(differences.is_empty(), "{}", differences.join("\n\n"));
}

/// An `--output` the library cannot parse, `--push` under `--offline` and a registry password
/// without a user name are the caller's to fix (exit 1, with the fix), before any model is read
/// or environment built.
#[test]
fn a_bad_output_or_an_offline_push_is_refused_before_building() {
    let ctx = TestContext::new();
    let image = |flags: &[&str]| {
        let mut command = ctx.command();
        command
            .args(["image", "no-such-model", "--tag", "localhost:5000/m:1"])
            .args(flags);
        command
    };
    pyfunc_env_snapshot!(ctx.filters(), image(&["--output", "dir/"]), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Invalid `--output` `dir/`

        hint: Write `oci:DIR` (an OCI image layout) or `docker-archive:FILE`
    "#);
    pyfunc_env_snapshot!(ctx.filters(), image(&["--push", "--offline"]), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: `--push` needs the network, and `--offline` is set

        hint: Write the image to a file with `--output` instead
    "#);
    // A password without a user name was dropped without a word (the credentials went unused
    // and the registry answered with its own refusal): each needs the other, from a flag or
    // its variable.
    pyfunc_env_snapshot!(ctx.filters(), image(&["--password", "secret"]), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: A registry password was given without a user name

        hint: Pass both `--username` and `--password` (or `PYFUNC_ENV_REGISTRY_USERNAME` and `PYFUNC_ENV_REGISTRY_PASSWORD`), or neither to use the auth files of `podman login` and `docker login`
    "#);
    let mut from_variable = image(&[]);
    from_variable.env("PYFUNC_ENV_REGISTRY_USERNAME", "me");
    pyfunc_env_snapshot!(ctx.filters(), from_variable, @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: A registry user name was given without a password

        hint: Pass both `--username` and `--password` (or `PYFUNC_ENV_REGISTRY_USERNAME` and `PYFUNC_ENV_REGISTRY_PASSWORD`), or neither to use the auth files of `podman login` and `docker login`
    "#);
}
