//! Secrets in settings and index URLs (issue 23): `--show-settings` masks them, `deps` masks
//! them on stdout (not in `-o`), and uv gets index credentials through its environment, never
//! its arguments, which any local user can read in `ps`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::{TestContext, describe, pyfunc_env_snapshot, stderr, stdout};

/// Every setting that can hold a secret comes out masked: mirror URLs (user information and
/// anaconda.org `/t/<token>/`), mirror prefixes, the environment's mirrors, a SAS-signed
/// remote cache.
#[test]
fn show_settings_masks_every_secret() {
    let ctx = TestContext::new();
    let config = ctx.path().join("config.toml");
    fs_err::write(
        &config,
        r#"remote-cache = "az://models/envs?sv=2022-11-02&sig=c2lnbmF0dXJlLXNlY3JldA"
[mirrors]
"conda-forge" = "https://alice:s3cret-pw@mirror.example/conda-forge"
"https://bob:hunter22@old.example/" = "https://conda.anaconda.org/t/tk-0123456789/private"
"#,
    )
    .unwrap();
    let mut command = ctx.command();
    command
        .env(
            "PYFUNC_ENV_MIRRORS",
            "defaults=https://carol:pa55-word@m.example/d",
        )
        .arg("--show-settings")
        .arg("--config-file")
        .arg(&config)
        .args(["cache", "dir"]);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    for secret in [
        "s3cret-pw",
        "hunter22",
        "tk-0123456789",
        "pa55-word",
        "c2lnbmF0dXJlLXNlY3JldA",
    ] {
        assert!(!text.contains(secret), "`{secret}` shown:\n{text}");
    }
    pyfunc_env_snapshot!(ctx.filters(), command, @r#"
    exit_code: 0 (success)
    ----- stdout -----
    {
      "cache_dir": "[CACHE_DIR]",
      "offline": true,
      "no_progress": true,
      "uv": null,
      "uv_cache_dir": "[REPO]/target/test-uv-cache",
      "mirrors": {
        "conda-forge": "https://alice:****@mirror.example/conda-forge",
        "defaults": "https://carol:****@m.example/d",
        "https://bob:****@old.example/": "https://conda.anaconda.org/t/****/private"
      },
      "lock_timeout": 300,
      "remote_cache": "az://models/envs?sv=2022-11-02&sig=****",
      "remote_cache_read_only": false,
      "remote_cache_timeout": 15,
      "remote_cache_sign_key": null,
      "remote_cache_trusted_keys": [],
      "remote_cache_require_signed": false,
      "config_file": "[TEMP_DIR]/config.toml",
      "color": false
    }

    ----- stderr -----
    "#);
}

/// What the index server saw: each request's path and status, and every `uv pip install`
/// command line on this machine while uv was fetching from it.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, u16)>,
    uv_command_lines: Vec<String>,
    leaked: Vec<String>,
}

/// A PEP 503 index with HTTP basic auth (`alice` / `password`) serving the wheels of
/// `env_test::wheel_dir()`; at every authorised request it reads `/proc/*/cmdline`, as any
/// local user can, looking for the password.
struct AuthIndex {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every process's command line that holds `needle`, and every `uv ... pip install` one.
fn scan_command_lines(needle: &str, seen: &mut Seen) {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(bytes) = fs_err::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
        if line.contains(needle) {
            seen.leaked.push(line.clone());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first().is_some_and(|w| w.ends_with("uv"))
            && words.windows(2).any(|w| w == ["pip", "install"])
        {
            seen.uv_command_lines.push(line);
        }
    }
}

impl AuthIndex {
    fn start(password: &str, wheels: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let expected = format!("Basic {}", base64(format!("alice:{password}").as_bytes()));
        let (password, wheels, shared) = (password.to_string(), wheels.to_path_buf(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (expected, password, wheels, seen) = (
                    expected.clone(),
                    password.clone(),
                    wheels.clone(),
                    shared.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(stream, &expected, &password, &wheels, &seen);
                });
            }
        });
        Self { port, seen }
    }

    fn url(&self, password: &str) -> String {
        format!("http://alice:{password}@127.0.0.1:{}/simple/", self.port)
    }
}

fn serve(
    mut stream: TcpStream,
    expected: &str,
    password: &str,
    wheels: &Path,
    seen: &Mutex<Seen>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut authorised = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorised = value.trim() == expected;
        }
    }
    let (status, content_type, body): (u16, &str, Vec<u8>) = if authorised {
        scan_command_lines(password, &mut seen.lock().unwrap());
        if path == "/simple/wheel/" {
            let mut page = String::from("<html><body>\n");
            for entry in fs_err::read_dir(wheels).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("wheel-")
                    && Path::new(&name)
                        .extension()
                        .is_some_and(|extension| extension == "whl")
                {
                    let _ = writeln!(page, "<a href=\"/files/{name}\">{name}</a><br>");
                }
            }
            page.push_str("</body></html>\n");
            (200, "text/html", page.into_bytes())
        } else if let Some(name) = path.strip_prefix("/files/")
            && !name.contains('/')
            && wheels.join(name).is_file()
        {
            (
                200,
                "application/octet-stream",
                fs_err::read(wheels.join(name)).unwrap(),
            )
        } else {
            (404, "text/plain", b"not found".to_vec())
        }
    } else {
        (401, "text/plain", b"credentials needed".to_vec())
    };
    seen.lock().unwrap().requests.push((path, status));
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        head.push_str("WWW-Authenticate: Basic realm=\"index\"\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

/// A virtualenv-mode model whose requirements install `wheel` from `index_url`.
fn private_index_model(ctx: &TestContext, index_url: &str) -> PathBuf {
    ctx.model(
        "private",
        &[
            (
                "python_env.yaml",
                "python: \"3.11.7\"\nbuild_dependencies: []\ndependencies:\n- -r requirements.txt\n",
            ),
            (
                "requirements.txt",
                &format!("--index-url {index_url}\nwheel==0.45.1\n"),
            ),
            (
                "conda.yaml",
                "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - -r requirements.txt\n",
            ),
        ],
    )
}

/// A real install through a password-protected index: it works, and while uv fetches from
/// it no process on the machine has the password in its command line (uv gets it in its
/// environment, which only its owner can read); `-v` does not show it either.
#[test]
fn index_credentials_never_reach_a_command_line() {
    let password = "idx-pw-7f3a9c";
    let index = AuthIndex::start(password, env_test::wheel_dir().unwrap());
    let ctx = TestContext::new().online();
    let model = private_index_model(&ctx, &index.url(password));
    let output = ctx
        .command()
        .arg("create")
        .arg(&model)
        .args(["--python-source", "system", "--no-compile", "-v"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(!stderr(&output).contains(password), "{}", describe(&output));
    let prefix = PathBuf::from(stdout(&output).trim());
    let installed = std::process::Command::new(prefix.join("bin/python"))
        .args(["-c", "import wheel; print(wheel.__version__)"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&installed).trim(),
        "0.45.1",
        "{}",
        describe(&installed)
    );
    let seen = index.seen.lock().unwrap();
    assert!(
        seen.requests
            .iter()
            .any(|(path, status)| path.starts_with("/files/wheel-") && *status == 200),
        "{:?}",
        seen.requests
    );
    // The scan ran while uv was running: it saw uv's own command line.
    assert!(
        !seen.uv_command_lines.is_empty(),
        "no uv command line seen: {:?}",
        seen.requests
    );
    assert!(
        seen.leaked.is_empty(),
        "the password is in a command line: {:#?}",
        seen.leaked
    );
}

/// `deps` masks index credentials on stdout in the default pip format, as `--format json`
/// does; `-o FILE` writes the file exactly as the model has it.
#[test]
fn deps_masks_index_passwords_on_stdout_and_writes_them_to_a_file() {
    let ctx = TestContext::new();
    let model = private_index_model(&ctx, "http://alice:idx-pw-7f3a9c@127.0.0.1:9/simple/");
    let mut command = ctx.command();
    command.arg("deps").arg(&model);
    pyfunc_env_snapshot!(ctx.filters(), command, @r"
    exit_code: 0 (success)
    ----- stdout -----
    --index-url http://alice:****@127.0.0.1:9/simple/
    wheel==0.45.1

    ----- stderr -----
    ");
    let json = ctx
        .command()
        .arg("deps")
        .arg(&model)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", describe(&json));
    assert!(
        !stdout(&json).contains("idx-pw-7f3a9c"),
        "{}",
        describe(&json)
    );
    let file = ctx.path().join("requirements.txt");
    let written = ctx
        .command()
        .arg("deps")
        .arg(&model)
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", describe(&written));
    assert_eq!(
        fs_err::read(&file).unwrap(),
        fs_err::read(model.join("requirements.txt")).unwrap()
    );
}
