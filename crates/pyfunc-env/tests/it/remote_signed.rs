//! Signed remote-cache entries (issue 26) against a real S3 store (`SeaweedFS`): CI signs,
//! agents trust public keys, and whoever else writes the bucket cannot put code on them.
//!
//! One environment is built once (agent A, CI) and every scenario reuses it: agents with an
//! empty cache and a channel that leads nowhere pull it or, refused, fail to build locally
//! (which proves nothing came from the remote without building anything a second time).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{TestContext, describe, json, stderr, stdout};
use crate::pack::conda_model;
use crate::remote::{agent_create, assert_pulled, s3_env};
use crate::servers::Seaweed;

/// `cache keygen NAME --output DIR`: the secret key's path and the public key line.
fn keygen(ctx: &TestContext, name: &str) -> (PathBuf, String) {
    let dir = ctx.path().join("keys");
    fs_err::create_dir_all(&dir).unwrap();
    let output = ctx
        .command()
        .args(["cache", "keygen", name, "--output"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let public = stdout(&output).trim().to_string();
    assert_eq!(
        fs_err::read_to_string(dir.join(format!("{name}.public")))
            .unwrap()
            .trim(),
        public
    );
    (dir.join(format!("{name}.secret")), public)
}

/// One unsigned HTTP request to `SeaweedFS` (it has no identities: any request is accepted,
/// as an attacker with write credentials would be): the status and body.
fn s3(weed: &Seaweed, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", weed.s3_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&response[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (status, response[end + 4..].to_vec())
}

fn s3_get(weed: &Seaweed, path: &str) -> Vec<u8> {
    let (status, body) = s3(weed, "GET", path, b"");
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn s3_put(weed: &Seaweed, path: &str, body: &[u8]) {
    let (status, answer) = s3(weed, "PUT", path, body);
    assert!(
        status < 300,
        "PUT {path}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}

/// A zstd frame holding `content` as one raw (stored) block: what an attacker would write.
fn zstd_raw_frame(content: &[u8]) -> Vec<u8> {
    let size = u32::try_from(content.len()).unwrap();
    assert!(size < 128 << 10);
    let mut frame = 0xFD2F_B528_u32.to_le_bytes().to_vec();
    // Single segment, a 4-byte content size.
    frame.push(0xA0);
    frame.extend_from_slice(&size.to_le_bytes());
    // The last block, raw, `size` bytes.
    let header = 1 | (size << 3);
    frame.extend_from_slice(&header.to_le_bytes()[..3]);
    frame.extend_from_slice(content);
    frame
}

/// `create -v` as an agent with an empty cache at `cache` and no usable channel: any local
/// build fails, so success means the remote's entry was pulled (and a refusal costs no build;
/// `-v` shows the warning, which a failed build does not print).
fn agent(
    ctx: &TestContext,
    cache: &Path,
    model: &Path,
    env: &[(&'static str, String)],
    extra: &[&str],
) -> Output {
    let mut extra = extra.to_vec();
    extra.push("-v");
    agent_create(ctx, cache, model, false, env, &extra)
}

/// The warning of a refused entry (shown by `-v`, the local build then failing), and no
/// environment installed.
#[track_caller]
fn assert_refused(output: &Output, cache: &Path, key: &str, says: &str) {
    assert!(!output.status.success(), "{}", describe(output));
    let text = stderr(output);
    assert!(
        text.contains(&format!(
            "The remote cache's entry `v2/linux-64/{key}/manifest.json` is not trusted: {says}"
        )) && text.contains("building locally"),
        "{}",
        describe(output)
    );
    assert_eq!(
        text.matches("is not trusted").count(),
        1,
        "{}",
        describe(output)
    );
    assert!(
        !cache.join(format!("envs-v1/{key}/bin")).exists(),
        "a refused entry was installed: {}",
        describe(output)
    );
}

/// CI signs with `ci-1`; an agent trusting `ci-1` pulls; one trusting only another key
/// refuses (a miss, one warning; an error with `--remote-cache-require-signed`); after a
/// rotation to `ci-2`, an agent trusting both pulls entries signed by either; `cache list
/// --remote` and `cache verify --remote` say who signed.
#[test]
fn pypi_remote_s3_signed_entries_trusted_refused_and_rotated() {
    let weed = Seaweed::start();
    weed.create_bucket("envs");
    let ctx = TestContext::new().online();
    let model = conda_model(&ctx);
    let (ci1, ci1_public) = keygen(&ctx, "ci-1");
    let (ci2, ci2_public) = keygen(&ctx, "ci-2");
    let (_, other_public) = keygen(&ctx, "other-1");
    let env = s3_env(&weed, "s3://envs");
    let sign1 = ["--remote-cache-sign-key", ci1.to_str().unwrap()];

    // CI builds, signs with ci-1 and pushes.
    let cache_ci = ctx.path().join("ci");
    let built = json(&agent_create(&ctx, &cache_ci, &model, true, &env, &sign1));
    assert_eq!(built["pushed"], true, "{built:#}");
    let key = built["key"].as_str().unwrap().to_string();
    let object = s3_get(&weed, &format!("/envs/v2/linux-64/{key}/manifest.json"));
    let object: serde_json::Value = serde_json::from_slice(&object).unwrap();
    assert_eq!(object["signatures"][0]["key"], "ci-1", "{object:#}");
    // Provenance is signed with the rest: the builder and every package with its hash.
    let provenance = &object["manifest"]["provenance"];
    assert_eq!(provenance["builder_platform"], "linux-64", "{provenance:#}");
    let packages = provenance["packages"].as_array().unwrap();
    assert!(
        packages.iter().any(|p| p["kind"] == "conda"
            && p["name"] == "numpy"
            && p["sha256"].as_str().is_some_and(|s| s.len() == 64)),
        "{provenance:#}"
    );
    assert!(
        packages
            .iter()
            .any(|p| p["kind"] == "python" && p["name"] == "wheel" && p["version"] == "0.45.1"),
        "{provenance:#}"
    );

    // An agent trusting ci-1 (read-only credentials) pulls it.
    let trust1 = [
        "--remote-cache-read-only",
        "--remote-cache-trusted-key",
        ci1_public.as_str(),
    ];
    let cache_b = ctx.path().join("b");
    let output = agent(&ctx, &cache_b, &model, &env, &trust1);
    assert_pulled(&json(&output));
    assert!(
        !stderr(&output).contains("warning"),
        "{}",
        describe(&output)
    );

    // An agent trusting only another key: a miss with one warning; it builds locally (here
    // that fails: its channel leads nowhere), nothing of the entry installed.
    let cache_c = ctx.path().join("c");
    let trust_other = [
        "--remote-cache-read-only",
        "--remote-cache-trusted-key",
        other_public.as_str(),
    ];
    let output = agent(&ctx, &cache_c, &model, &env, &trust_other);
    assert_refused(
        &output,
        &cache_c,
        &key,
        "it is signed by `ci-1`, which this agent does not trust",
    );
    // The same from the variable.
    let mut env_other = env.clone();
    env_other.push(("PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS", other_public.clone()));
    let output = agent(
        &ctx,
        &cache_c,
        &model,
        &env_other,
        &["--remote-cache-read-only"],
    );
    assert_refused(&output, &cache_c, &key, "it is signed by `ci-1`");

    // A production agent requiring signatures: an error, exit 1, with the fix.
    let mut require = trust_other.to_vec();
    require.push("--remote-cache-require-signed");
    let output = agent(&ctx, &cache_c, &model, &env, &require);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("is not trusted: it is signed by `ci-1`")
            && text.contains("--remote-cache-sign-key")
            && !text.contains("building locally"),
        "{}",
        describe(&output)
    );
    assert!(!cache_c.join(format!("envs-v1/{key}/bin")).exists());

    // Rotation: CI pushes the same environment (from its cache, nothing rebuilt) to a second
    // prefix, first unsigned, then signed by ci-2: the signed push replaces the unsigned entry.
    let rotated = s3_env(&weed, "s3://envs/rotated");
    let push = |extra: &[&str]| {
        let mut command = ctx.command();
        command
            .env("PYFUNC_ENV_CACHE_DIR", &cache_ci)
            .args(["cache", "push", "--env-manager", "conda", "--json"])
            .arg(&model)
            .args(extra);
        for (name, value) in &rotated {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        json(&output)[0]["result"].as_str().unwrap().to_string()
    };
    assert_eq!(push(&[]), "pushed");
    assert_eq!(
        push(&["--remote-cache-sign-key", ci2.to_str().unwrap()]),
        "pushed"
    );
    let both = format!("{ci1_public}\n  {ci2_public}");
    let mut trust_both = env.clone();
    trust_both.push(("PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS", both.clone()));
    assert_pulled(&json(&agent(
        &ctx,
        &ctx.path().join("d1"),
        &model,
        &trust_both,
        &["--remote-cache-read-only"],
    )));
    let mut trust_both_rotated = rotated.clone();
    trust_both_rotated.push(("PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS", both));
    assert_pulled(&json(&agent(
        &ctx,
        &ctx.path().join("d2"),
        &model,
        &trust_both_rotated,
        &["--remote-cache-read-only"],
    )));
    // Trusting ci-1 alone refuses what ci-2 signed.
    let output = agent(&ctx, &ctx.path().join("d3"), &model, &rotated, &trust1);
    assert_refused(
        &output,
        &ctx.path().join("d3"),
        &key,
        "it is signed by `ci-2`, which this agent does not trust",
    );

    // `cache list --remote` names the signer; `cache verify --remote` checks one entry.
    let run = |args: &[&str], env: &[(&'static str, String)]| {
        let mut command = ctx.command();
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let listed = run(
        &[
            "cache",
            "list",
            "--remote",
            "--remote-cache-trusted-key",
            &ci1_public,
        ],
        &env,
    );
    assert!(listed.status.success(), "{}", describe(&listed));
    let line = stdout(&listed)
        .lines()
        .find(|l| l.starts_with(&key))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains(" ci-1 "), "{}", describe(&listed));
    let verified = run(
        &[
            "cache",
            "verify",
            "--remote",
            &key,
            "--remote-cache-trusted-key",
            &ci1_public,
        ],
        &env,
    );
    assert!(verified.status.success(), "{}", describe(&verified));
    assert!(
        stderr(&verified).contains(&format!("OK {key}: signed by `ci-1` (verified);")),
        "{}",
        describe(&verified)
    );
    let refused = run(
        &[
            "cache",
            "verify",
            "--remote",
            &key,
            "--remote-cache-trusted-key",
            &other_public,
        ],
        &env,
    );
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(
        stderr(&refused).contains("is not trusted: it is signed by `ci-1`"),
        "{}",
        describe(&refused)
    );
}

/// An attacker with write access to the bucket: rewrites the manifest and adds a pack so that
/// `bin/python3.11` is a script leaving a marker, every hash matching; and replays a signed
/// manifest under another key. Agents trusting CI's key refuse both: nothing is written into
/// their environments or store, and nothing runs.
#[test]
fn pypi_remote_s3_rewritten_or_replayed_entries_are_refused() {
    let weed = Seaweed::start();
    weed.create_bucket("envs");
    let ctx = TestContext::new().online();
    let model = conda_model(&ctx);
    let (ci1, ci1_public) = keygen(&ctx, "ci-1");
    let env = s3_env(&weed, "s3://envs");
    let built = json(&agent_create(
        &ctx,
        &ctx.path().join("ci"),
        &model,
        true,
        &env,
        &["--remote-cache-sign-key", ci1.to_str().unwrap()],
    ));
    assert_eq!(built["pushed"], true, "{built:#}");
    let key = built["key"].as_str().unwrap().to_string();
    let manifest_path = format!("/envs/v2/linux-64/{key}/manifest.json");
    let original = s3_get(&weed, &manifest_path);
    let mut object: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let trust = [
        "--remote-cache-read-only",
        "--remote-cache-trusted-key",
        ci1_public.as_str(),
    ];

    // The attacker's interpreter: a script that leaves a marker when anything runs it.
    let marker = ctx.path().join("attacker-code-ran");
    let script = format!("#!/bin/sh\ntouch {}\n", marker.display());
    let sha = sha256(script.as_bytes());
    let frame = zstd_raw_frame(script.as_bytes());
    // Named to sort last among the packs, so the others keep their indices.
    let pack = "f".repeat(64);
    s3_put(&weed, &format!("/envs/v2/packs/{pack}.pack"), &frame);
    let manifest = &mut object["manifest"];
    let packs = manifest["packs"].as_object_mut().unwrap();
    packs.insert(pack.clone(), frame.len().into());
    let index = packs.len() - 1;
    let entries = manifest["tree"]["entries"].as_array_mut().unwrap();
    let python = entries
        .iter_mut()
        .find(|e| e["path"] == "bin/python3.11")
        .unwrap();
    let old_size = python["size"].as_u64().unwrap();
    python["sha256"] = sha.clone().into();
    python["size"] = script.len().into();
    python["mode"] = 0o755.into();
    let bytes = manifest["tree"]["bytes"].as_u64().unwrap();
    manifest["tree"]["bytes"] = (bytes - old_size + script.len() as u64).into();
    manifest["blobs"][&sha] =
        serde_json::json!({"pack": index, "offset": 0, "length": frame.len()});
    // The rewritten manifest keeps CI's signature (which no longer verifies).
    s3_put(&weed, &manifest_path, &serde_json::to_vec(&object).unwrap());

    // An agent that can build: one warning, a local build, the real interpreter.
    let cache = ctx.path().join("agent");
    let output = agent_create(&ctx, &cache, &model, true, &env, &trust);
    let created = json(&output);
    assert_eq!(created["remote_hit"], false, "{created:#}");
    let text = stderr(&output);
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(
        warnings,
        [format!(
            "warning: The remote cache's entry `v2/linux-64/{key}/manifest.json` is not trusted: its signature by `ci-1` does not verify (the entry was changed after it was signed); building locally"
        )],
        "{text}"
    );
    let prefix = PathBuf::from(created["prefix"].as_str().unwrap());
    assert_ne!(
        sha256(&fs_err::read(prefix.join("bin/python3.11")).unwrap()),
        sha
    );
    let ran = Command::new(prefix.join("bin/python"))
        .args(["-c", "print(1)"])
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", describe(&ran));
    assert!(!marker.exists(), "the attacker's code ran");
    // Without the signature: unsigned, refused the same way.
    let cache = ctx.path().join("agent2");
    object["signatures"] = serde_json::json!([]);
    s3_put(&weed, &manifest_path, &serde_json::to_vec(&object).unwrap());
    let output = agent(&ctx, &cache, &model, &env, &trust);
    assert_refused(&output, &cache, &key, "it is not signed");
    assert!(
        !cache.join(format!("store-v1/{}/{sha}", &sha[..2])).exists(),
        "the attacker's blob entered the store"
    );
    assert!(!marker.exists(), "the attacker's code ran");
    // `cache verify --remote` says the same without installing anything.
    let mut command = ctx.command();
    command.args([
        "cache",
        "verify",
        "--remote",
        &key,
        "--remote-cache-trusted-key",
        &ci1_public,
    ]);
    for (name, value) in &env {
        command.env(name, value);
    }
    let verified = command.output().unwrap();
    assert_eq!(verified.status.code(), Some(1), "{}", describe(&verified));
    assert!(
        stderr(&verified).contains("is not trusted: it is not signed"),
        "{}",
        describe(&verified)
    );
    assert!(!marker.exists(), "the attacker's code ran");

    // An agent that trusts no key uses the rewritten entry (as documented: without keys the
    // bucket is trusted), yet a pull runs nothing of it: only starting the environment would.
    let unchecked = ctx.path().join("unchecked");
    let output = agent(
        &ctx,
        &unchecked,
        &model,
        &env,
        &["--remote-cache-read-only"],
    );
    assert_pulled(&json(&output));
    assert_eq!(
        fs_err::read_to_string(unchecked.join(format!("envs-v1/{key}/bin/python3.11"))).unwrap(),
        script
    );
    assert!(!marker.exists(), "a pull ran the attacker's code");

    // Replay: CI's signed manifest of this key, copied under another key's path.
    s3_put(&weed, &manifest_path, &original);
    let other = ctx.model(
        "other",
        &[(
            "conda.yaml",
            "name: other\nchannels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- tinypkg\n",
        )],
    );
    let dry = agent_create(
        &ctx,
        &ctx.path().join("dry"),
        &other,
        false,
        &env,
        &["--dry-run"],
    );
    assert!(dry.status.success(), "{}", describe(&dry));
    let dry = json(&dry);
    let other_key = dry[0]["key"]
        .as_str()
        .or_else(|| dry["key"].as_str())
        .unwrap()
        .to_string();
    assert_ne!(other_key, key);
    s3_put(
        &weed,
        &format!("/envs/v2/linux-64/{other_key}/manifest.json"),
        &original,
    );
    let cache = ctx.path().join("replayed");
    let output = agent(&ctx, &cache, &other, &env, &trust);
    assert!(!output.status.success(), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "The remote cache's manifest `v2/linux-64/{other_key}/manifest.json` is unusable: it is for key `{key}`"
        )) && text.contains("building locally"),
        "{}",
        describe(&output)
    );
    assert!(!cache.join(format!("envs-v1/{other_key}/bin")).exists());
    // The genuine entry, restored, is pulled by the same agent configuration.
    assert_pulled(&json(&agent(
        &ctx,
        &ctx.path().join("genuine"),
        &model,
        &env,
        &trust,
    )));
    assert!(!marker.exists());
}

/// The signing settings resolve like every other (flag, variable, configuration file), and a
/// bad one is a user error (exit 1) naming where it came from; the secret key is never shown.
#[test]
fn signing_settings_resolve_and_bad_keys_name_their_setting() {
    let ctx = TestContext::new();
    let (secret, ci1) = keygen(&ctx, "ci-1");
    let (_, ci2) = keygen(&ctx, "ci-2");
    let config = ctx.path().join("config.toml");
    fs_err::write(
        &config,
        format!(
            "remote-cache-sign-key = \"{}\"\nremote-cache-trusted-keys = [\"{ci1}\", \"{ci2}\"]\nremote-cache-require-signed = true\n",
            secret.display()
        ),
    )
    .unwrap();
    let settings = |env: &[(&str, &str)], extra: &[&str]| {
        let mut command = ctx.command();
        command
            .arg("--config-file")
            .arg(&config)
            .arg("--show-settings");
        for (name, value) in env {
            command.env(name, value);
        }
        command.args(["cache", "list", "--remote"]).args(extra);
        command.output().unwrap()
    };
    let output = settings(&[], &[]);
    assert!(output.status.success(), "{}", describe(&output));
    let shown: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        shown["remote_cache_trusted_keys"],
        serde_json::json!([ci1, ci2])
    );
    assert_eq!(shown["remote_cache_require_signed"], true);
    let secret_text = fs_err::read_to_string(&secret).unwrap();
    let secret_b64 = secret_text.trim().split_once(':').unwrap().1;
    assert!(!stdout(&output).contains(secret_b64));
    // The variable replaces the file, the flag the variable.
    let output = settings(
        &[("PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS", ci2.as_str())],
        &[],
    );
    let shown: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(shown["remote_cache_trusted_keys"], serde_json::json!([ci2]));
    let output = settings(
        &[("PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS", ci2.as_str())],
        &["--remote-cache-trusted-key", &ci1],
    );
    let shown: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(shown["remote_cache_trusted_keys"], serde_json::json!([ci1]));

    // Bad keys, each named by where it came from.
    let short = "ci-1:AAAA";
    for (env, extra, says) in [
        (
            vec![("PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS", short)],
            vec![],
            "Invalid `PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS`",
        ),
        (
            vec![],
            vec!["--remote-cache-trusted-key", short],
            "invalid value 'ci-1:AAAA' for '--remote-cache-trusted-key <NAME:BASE64>': Invalid key `ci-1`: 3 bytes where a public key has 32",
        ),
        (
            vec![],
            vec!["--remote-cache-trusted-key", "AAAA"],
            "expected `NAME:BASE64`",
        ),
        (
            vec![("PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY", ci1.as_str())],
            vec![],
            "Invalid `PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY`",
        ),
        (
            vec![],
            vec!["--remote-cache-sign-key", "/nonexistent/ci-1.secret"],
            "Invalid `--remote-cache-sign-key`",
        ),
    ] {
        let output = settings(&env, &extra);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(
            stderr(&output).contains(says),
            "{says}: {}",
            describe(&output)
        );
    }
    // Requiring signatures without a trusted key is refused.
    let mut command = ctx.command();
    command
        .env("PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED", "1")
        .args(["cache", "list", "--remote"]);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains("`--remote-cache-require-signed` needs a trusted key"),
        "{}",
        describe(&output)
    );
    // `keygen` never overwrites a key.
    let output = ctx
        .command()
        .args(["cache", "keygen", "ci-1", "--output"])
        .arg(ctx.path().join("keys"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains("exists already; a key is never overwritten"),
        "{}",
        describe(&output)
    );
    assert_eq!(fs_err::read_to_string(&secret).unwrap(), secret_text);
}
