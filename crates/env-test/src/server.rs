//! A static file server for a channel directory, so tests exercise rattler's HTTP code path.
//!
//! It answers `GET` and `HEAD` with the file and an exact `Content-Length`, and `404` for anything
//! that is not a file under the root — which is how the gateway learns that shards,
//! `repodata.json.zst` and `.bz2` are not offered, and falls back to `repodata.json`.
//!
//! It is hand-written on `std::net` (one thread per connection, one request per connection,
//! `Connection: close`) rather than built on `tiny_http` 0.12: that crate hands connections to a
//! thread pool whose `spawn` can lose a wake-up, so a new connection may sit in the queue while
//! every worker is parked on an idle keep-alive connection — which reqwest holds open for 90 s.
//! With it, about one HTTP install in five took 92–102 s instead of 5 s.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use fs_err as fs;
use url::Url;

/// The longest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: u64 = 16 * 1024;

/// How long a client may take to send its request, or to take a chunk of the response.
const IO_TIMEOUT: Duration = Duration::from_mins(1);

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRequest {
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request path, without the query string, e.g. `/noarch/repodata.json`.
    pub path: String,
    /// The status code sent.
    pub status: u16,
}

/// Serves a directory over HTTP from background threads until dropped.
#[derive(Debug)]
pub struct ChannelServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<ServedRequest>>>,
    thread: Option<JoinHandle<()>>,
}

impl ChannelServer {
    /// Serves `dir` on `127.0.0.1` with a port chosen by the operating system.
    pub fn start(dir: &Path) -> Result<Self> {
        Self::bind(dir, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Serves `dir` on `addr`.
    pub fn bind(dir: &Path, addr: impl ToSocketAddrs) -> Result<Self> {
        let root = fs::canonicalize(dir)?;
        let listener = TcpListener::bind(addr).context("Failed to start the HTTP server")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let log = Arc::clone(&log);
            std::thread::Builder::new()
                .name(format!("env-test-http-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        // A failed accept (the client gave up) concerns that client only.
                        let Ok(stream) = stream else { continue };
                        let root = root.clone();
                        let log = Arc::clone(&log);
                        // The gateway and the installer fetch in parallel, and a large package
                        // must not hold up `repodata.json`.
                        std::thread::spawn(move || serve_connection(&root, stream, &log));
                    }
                })?
        };
        Ok(Self {
            addr,
            stop,
            log,
            thread: Some(thread),
        })
    }

    /// The socket address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The channel URL, e.g. `http://127.0.0.1:43117/` (with a trailing slash).
    #[must_use]
    pub fn url(&self) -> Url {
        // An IP address and a port always form a valid URL.
        Url::parse(&format!("http://{}/", self.addr)).expect("a valid URL")
    }

    /// The requests answered so far, in the order they completed.
    #[must_use]
    pub fn requests(&self) -> Vec<ServedRequest> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Blocks for as long as the server runs, i.e. until the process is interrupted: for
    /// `env-test channel serve`.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag; it then drops the listener.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_connection(root: &Path, stream: TcpStream, log: &Mutex<Vec<ServedRequest>>) {
    // Errors here mean the client went away; there is nobody to report them to.
    let served = serve_request(root, &stream);
    // Closing the connection ends the response (`Connection: close`).
    drop(stream);
    if let Ok(Some(request)) = served
        && let Ok(mut log) = log.lock()
    {
        log.push(request);
    }
}

/// Reads one request from `stream` and answers it.
fn serve_request(root: &Path, stream: &TcpStream) -> io::Result<Option<ServedRequest>> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_HEAD_BYTES));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        // The server's own wake-up connection, or a client that connected and left.
        return Ok(None);
    }
    // Skip the headers: nothing in them changes the answer.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
    }

    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        respond_text(stream, 400, "Bad Request", false)?;
        return Ok(None);
    };
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let is_head = method == "HEAD";
    let status = if method != "GET" && !is_head {
        respond_text(stream, 405, "Method Not Allowed", false)?;
        405
    } else if let Some(file) = resolve(root, &path) {
        let mut file = fs::File::open(file)?;
        let length = file.metadata()?.len();
        let content_type = if Path::new(&path)
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("json"))
        {
            "application/json"
        } else {
            "application/octet-stream"
        };
        let mut writer = io::BufWriter::new(stream);
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: {content_type}\r\n\
             Connection: close\r\n\r\n"
        )?;
        if !is_head {
            io::copy(&mut file, &mut writer)?;
        }
        writer.flush()?;
        200
    } else {
        respond_text(stream, 404, "Not Found", is_head)?;
        404
    };
    Ok(Some(ServedRequest {
        method: method.to_owned(),
        path,
        status,
    }))
}

fn respond_text(
    mut stream: &TcpStream,
    status: u16,
    reason: &str,
    is_head: bool,
) -> io::Result<()> {
    let body = format!("{reason}\n");
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
         {allow}Connection: close\r\n\r\n{}",
        body.len(),
        if is_head { "" } else { &body }
    )?;
    stream.flush()
}

/// The file under `root` that `path` names, if it is one; `None` for directories, missing files
/// and any path that tries to leave `root`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let relative = Path::new(decoded.trim_start_matches('/'));
    if relative
        .components()
        .any(|component| !matches!(component, Component::Normal(_)))
    {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_root_only() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("noarch")).unwrap();
        fs::write(root.path().join("noarch/repodata.json"), "{}").unwrap();
        assert!(resolve(root.path(), "/noarch/repodata.json").is_some());
        assert!(resolve(root.path(), "/noarch/repo%64ata.json").is_some());
        assert!(resolve(root.path(), "/noarch/").is_none());
        assert!(resolve(root.path(), "/noarch/../noarch/repodata.json").is_none());
        assert!(resolve(root.path(), "/noarch/%2e%2e/noarch/repodata.json").is_none());
        assert!(resolve(root.path(), "/noarch/repodata.json.zst").is_none());
    }
}
