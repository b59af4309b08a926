//! CLI defects of issue 23: the usage error's subcommand list, `create --from` names with `#`
//! and multi-model warnings, `run`'s line after a remote pull, and `unpack` of hostile archives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, describe, mirror_args, pyfunc_env_snapshot, stderr};
use crate::pack::{channel_url, conda_model};

/// The usage error lists what `--help` lists: not the hidden `__compile-bytecode`.
#[test]
fn a_missing_subcommand_lists_only_visible_commands() {
    let ctx = TestContext::new();
    pyfunc_env_snapshot!(ctx.filters(), ctx.command(), @r"
    exit_code: 1 (failure)
    ----- stdout -----

    ----- stderr -----
    error: 'pyfunc-env' requires a subcommand but one was not provided
      [subcommands: deps, inspect, create, run, check, lock, cache, pack, unpack, image, completions, help]

    Usage: pyfunc-env [OPTIONS] <COMMAND>

    For more information, try '--help'.
    ");
}

/// `--from` keeps a `#` inside a name (a comment starts at the line's start or after
/// whitespace), and a multi-model `create` shows each model's file warnings and build
/// warnings, with the model they are about.
#[test]
fn create_from_keeps_hashes_in_names_and_shows_every_models_warnings() {
    let ctx = TestContext::new();
    // Python 3.11.99 exists nowhere: built with 3.11.7, a build warning.
    let hashed = ctx.model(
        "run#3",
        &[(
            "python_env.yaml",
            "python: \"3.11.99\"\nbuild_dependencies: []\ndependencies: []\n",
        )],
    );
    // Conda dependencies the virtualenv manager drops: a warning about the model's files.
    ctx.model(
        "dropped",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg\n",
        )],
    );
    let list = ctx.path().join("models/list.txt");
    fs_err::write(
        &list,
        "# the build agent's models\nrun#3 # a hash in its name\n\tdropped\n",
    )
    .unwrap();
    let output = ctx
        .command()
        .arg("create")
        .arg("--from")
        .arg(&list)
        .args([
            "--env-manager",
            "virtualenv",
            "--python-source",
            "system",
            "--no-compile",
        ])
        .output()
        .unwrap();
    let text = ctx.filter(&stderr(&output));
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text.contains("2 models: 2 built, 0 cached or shared, 0 failed"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "warning: `{}`: Python 3.11.99 is not available; using Python 3.11.7",
            ctx.filter(&hashed.canonicalize().unwrap().display().to_string())
        )),
        "{text}"
    );
    assert!(
        text.contains("warning: `[TEMP_DIR]/models/dropped`: ") && text.contains("tinypkg"),
        "{text}"
    );
}

/// `run` on an empty cache whose environment comes from the remote cache says it was pulled
/// (not created), and `-vv` names the remote.
#[test]
fn run_says_pulled_after_a_remote_hit_and_logs_the_remote() {
    let ctx = TestContext::new();
    let model = conda_model(&ctx);
    let remote = ctx.path().join("shared");
    let url = format!("file://{}", remote.display());
    let built = ctx
        .command()
        .env("PYFUNC_ENV_CACHE_DIR", ctx.path().join("a"))
        .env("PYFUNC_ENV_REMOTE_CACHE", &url)
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(&channel_url()))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", describe(&built));
    // B: an empty cache and a channel that does not exist: only a pull can succeed.
    let output = ctx
        .command()
        .env("PYFUNC_ENV_CACHE_DIR", ctx.path().join("b"))
        .env("PYFUNC_ENV_REMOTE_CACHE", &url)
        .arg("run")
        .arg(&model)
        .args(["--env-manager", "conda", "-vv"])
        .args(mirror_args("file:///nonexistent/channel"))
        .args(["--", "python", "-c", "pass"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = ctx.filter(&stderr(&output));
    assert!(
        text.contains("Pulled conda environment from the remote cache: [TEMP_DIR]/b/envs-v1/"),
        "{text}"
    );
    assert!(!text.contains("Created conda environment"), "{text}");
    assert!(
        text.contains("in the remote cache `file://[TEMP_DIR]/shared`"),
        "{text}"
    );
}

/// A raw tar header, as an attacker writes it (`set_path` refuses `..`).
fn raw_header(
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    mode: u32,
    size: u64,
) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    let raw = &mut header.as_old_mut().name;
    raw[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    header
}

fn write_tar(path: &Path, entries: &[(&str, tar::EntryType, Option<&str>)]) {
    let mut builder = tar::Builder::new(fs_err::File::create(path).unwrap());
    for (name, kind, link) in entries {
        builder
            .append(&raw_header(name, *kind, *link, 0o755, 0), std::io::empty())
            .unwrap();
    }
    builder.finish().unwrap();
}

/// The symlink chain of issue 23 (each link inside on paper, `out` resolving to `/`) is
/// refused by `unpack` in either order, and nothing is left behind.
#[test]
fn unpack_refuses_symlink_chains_that_leave_the_prefix() {
    let ctx = TestContext::new();
    let up = "a/b/c/d/e/f/g/up";
    let out = "a/b/c/d/e/f/g/out";
    let symlink = tar::EntryType::Symlink;
    for (index, entries) in [
        [
            (up, symlink, Some("../../../../../../..")),
            (out, symlink, Some("up/../../../../../../../..")),
        ],
        [
            (out, symlink, Some("up/../../../../../../../..")),
            (up, symlink, Some("../../../../../../..")),
        ],
    ]
    .iter()
    .enumerate()
    {
        let archive = ctx.path().join(format!("chain{index}.tar"));
        write_tar(&archive, entries);
        let target = ctx.path().join(format!("env{index}"));
        let output = ctx
            .command()
            .arg("unpack")
            .arg(&archive)
            .arg(&target)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(
            stderr(&output).contains("points outside the target directory"),
            "{}",
            describe(&output)
        );
        assert!(
            !target.exists(),
            "{index}: {} left behind",
            target.display()
        );
    }
}

/// SIGINT stops `unpack` promptly: exit 130, and the directory it created is gone.
#[test]
fn unpack_stops_on_sigint_and_leaves_nothing() {
    let ctx = TestContext::new();
    // 200,000 empty files: minutes of file creation, a few MB of archive.
    let archive = ctx.path().join("many.tar.gz");
    {
        let file = fs_err::File::create(&archive).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for dir in 0..200 {
            let name = format!("d{dir}/");
            builder
                .append(
                    &raw_header(&name, tar::EntryType::Directory, None, 0o755, 0),
                    std::io::empty(),
                )
                .unwrap();
            for file in 0..1000 {
                let name = format!("d{dir}/f{file}");
                builder
                    .append(
                        &raw_header(&name, tar::EntryType::Regular, None, 0o644, 0),
                        std::io::empty(),
                    )
                    .unwrap();
            }
        }
        builder.into_inner().unwrap().finish().unwrap();
    }
    let target: PathBuf = ctx.path().join("env");
    let child = ctx
        .command()
        .arg("unpack")
        .arg(&archive)
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once it has started writing.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !target.join("d1").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(target.join("d1").exists(), "unpack never started writing");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    assert!(
        stderr(&output).contains("interrupted; nothing was left there"),
        "{}",
        describe(&output)
    );
    assert!(!target.exists(), "{} left behind", target.display());
}
