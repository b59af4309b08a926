//! The shared test channel: its index, the relocatability of its `python` packages, and the HTTP
//! server.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use env_test::{ChannelServer, PYTHON_VERSIONS, test_channel};
use fs_err as fs;
use rattler_conda_types::RepoData;
use serde_json::Value;

/// `(file name, record)` for every package in `<channel>/<subdir>/repodata.json`.
fn records(channel: &Path, subdir: &str) -> BTreeMap<String, Value> {
    let path = channel.join(subdir).join("repodata.json");
    // rattler itself must accept the file.
    RepoData::from_path(&path).unwrap();
    let repodata: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(repodata["info"]["subdir"], subdir);
    let mut out = BTreeMap::new();
    for key in ["packages", "packages.conda"] {
        if let Some(packages) = repodata[key].as_object() {
            for (file_name, record) in packages {
                out.insert(file_name.clone(), record.clone());
            }
        }
    }
    out
}

fn depends(record: &Value) -> Vec<&str> {
    record["depends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|spec| spec.as_str().unwrap())
        .collect()
}

#[test]
fn repodata_lists_expected_records() {
    let channel = test_channel().unwrap();
    let linux = records(channel.path(), "linux-64");
    let noarch = records(channel.path(), "noarch");

    let names: Vec<&str> = linux.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "numpy-1.26.4-py310_0.conda",
            "numpy-1.26.4-py311_0.conda",
            "numpy-1.26.4-py312_0.conda",
            "python-3.10.13-0_pyenv_cpython.conda",
            "python-3.11.7-0_pyenv_cpython.conda",
            "python-3.12.1-0_pyenv_cpython.conda",
        ]
    );
    let names: Vec<&str> = noarch.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "pip-25.0.1-py_0.conda",
            "setuptools-75.8.0-py_0.conda",
            "tinydep-0.1.0-py_0.tar.bz2",
            "tinydep-0.1.1-py_0.conda",
            "tinypkg-1.2.0-py_0.conda",
            "tinypkg-2.0.0-py_0.conda",
            "wheel-0.45.1-py_0.conda",
        ]
    );

    for version in PYTHON_VERSIONS {
        let record = &linux[&format!("python-{version}-0_pyenv_cpython.conda")];
        assert_eq!(record["name"], "python");
        assert_eq!(record["version"], version);
        assert_eq!(record["subdir"], "linux-64");
        assert_eq!(depends(record), ["__glibc >=2.17"]);
        assert!(record["sha256"].as_str().unwrap().len() == 64);
        assert!(record["size"].as_u64().unwrap() > 5_000_000);
    }
    let numpy = &linux["numpy-1.26.4-py311_0.conda"];
    assert_eq!(
        depends(numpy),
        ["python >=3.11,<3.12.0a0", "__glibc >=2.17"]
    );
    assert_eq!(numpy["build"], "py311_0");

    let pip = &noarch["pip-25.0.1-py_0.conda"];
    assert_eq!(pip["noarch"], "python");
    assert_eq!(pip["subdir"], "noarch");
    assert_eq!(depends(pip), ["python >=3.8"]);
    assert_eq!(
        depends(&noarch["setuptools-75.8.0-py_0.conda"]),
        ["python >=3.9"]
    );
    assert_eq!(
        depends(&noarch["tinypkg-1.2.0-py_0.conda"]),
        ["python >=3.8", "tinydep >=0.1"]
    );
    // Nothing provides tinydep 0.2, so tinypkg 2 can never be installed.
    assert_eq!(
        depends(&noarch["tinypkg-2.0.0-py_0.conda"]),
        ["python >=3.8", "tinydep >=0.2"]
    );
}

/// Extracts the `python` package, runs the interpreter from there, then moves the directory and
/// runs it again: nothing may come from the pyenv install it was made from.
#[test]
fn python_is_relocatable() {
    let channel = test_channel().unwrap();
    let pyenv_root = env_test::pyenv_root().unwrap();
    let temp = tempfile::tempdir().unwrap();
    for version in PYTHON_VERSIONS {
        let minor = &version[..version.rfind('.').unwrap()];
        let archive = channel
            .path()
            .join("linux-64")
            .join(format!("python-{version}-0_pyenv_cpython.conda"));
        let first = temp.path().join(format!("first-{version}"));
        rattler_package_streaming::fs::extract(&archive, &first).unwrap();
        check_python(&first, minor, version, &pyenv_root);

        let moved = temp.path().join(format!("moved-{version}"));
        fs::rename(&first, &moved).unwrap();
        check_python(&moved, minor, version, &pyenv_root);
    }
}

fn check_python(prefix: &Path, minor: &str, version: &str, pyenv_root: &Path) {
    const SCRIPT: &str = r#"
import ssl, sqlite3, ctypes, lzma, bz2, zlib, json, sys, platform
ctypes.CDLL(None)
print(sys.prefix)
print(platform.python_version())
libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libpython" in line})
print(";".join(libs))
print(";".join(p for p in sys.path if p))
"#;
    let output = Command::new(prefix.join("bin").join(format!("python{minor}")))
        .args(["-I", "-c", SCRIPT])
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONPATH")
        .env_remove("LD_LIBRARY_PATH")
        .current_dir("/")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "python {version} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let prefix = fs::canonicalize(prefix).unwrap();
    assert_eq!(Path::new(lines[0]), prefix, "sys.prefix");
    assert_eq!(lines[1], version);
    let libpython: Vec<&str> = lines[2].split(';').collect();
    assert_eq!(
        libpython,
        [prefix
            .join("lib")
            .join(format!("libpython{minor}.so.1.0"))
            .to_str()
            .unwrap()],
        "libpython must be loaded from the package"
    );
    for entry in lines[3].split(';') {
        assert!(
            Path::new(entry).starts_with(&prefix),
            "sys.path entry `{entry}` is outside the prefix"
        );
        assert!(!Path::new(entry).starts_with(pyenv_root));
    }
}

/// A bare HTTP/1.1 request; returns the status, the headers (lowercased names) and the body.
fn http(
    server: &ChannelServer,
    method: &str,
    path: &str,
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, body)
}

#[test]
fn server_serves_files_and_404s() {
    let channel = test_channel().unwrap();
    let server = channel.serve().unwrap();
    assert_eq!(server.url().as_str(), format!("http://{}/", server.addr()));

    for path in [
        "linux-64/repodata.json",
        "noarch/repodata.json",
        "linux-64/python-3.11.7-0_pyenv_cpython.conda",
        "noarch/tinydep-0.1.0-py_0.tar.bz2",
    ] {
        let expected = fs::read(channel.path().join(path)).unwrap();
        let (status, headers, body) = http(&server, "GET", &format!("/{path}"));
        assert_eq!(status, 200, "GET {path}");
        assert_eq!(headers["content-length"], expected.len().to_string());
        assert!(!headers.contains_key("transfer-encoding"));
        assert!(body == expected, "GET {path} returned other bytes");

        let (status, headers, body) = http(&server, "HEAD", &format!("/{path}"));
        assert_eq!(status, 200, "HEAD {path}");
        assert_eq!(headers["content-length"], expected.len().to_string());
        assert!(body.is_empty());
    }
    for path in [
        "/linux-64/repodata.json.zst",
        "/noarch/repodata_shards.msgpack.zst",
        "/noarch/",
        "/../Cargo.toml",
    ] {
        assert_eq!(http(&server, "GET", path).0, 404, "GET {path}");
        assert_eq!(http(&server, "HEAD", path).0, 404, "HEAD {path}");
    }
    assert_eq!(http(&server, "POST", "/noarch/repodata.json").0, 405);

    let requests = server.requests();
    assert!(requests.iter().any(|request| request.method == "HEAD"
        && request.path == "/noarch/repodata.json"
        && request.status == 200));

    // Dropping the server stops it.
    let addr = server.addr();
    drop(server);
    // tiny_http's accept thread closes the socket shortly after the drop.
    let stopped = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        TcpStream::connect(addr).is_err()
    });
    assert!(stopped, "the server still accepts connections after drop");
}
