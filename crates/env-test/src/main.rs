//! `env-test`: build and serve the local conda channel the test suite uses.
//!
//! ```text
//! env-test channel build OUT_DIR [--force]
//! env-test channel serve DIR [--addr 127.0.0.1:8000]
//! env-test channel path
//! ```

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use env_test::{BuildOptions, ChannelServer};
use fs_err as fs;

/// Build and serve the local conda channel used by pyfunc-env's tests.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with the test channel.
    #[command(subcommand)]
    Channel(ChannelCommand),
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Build an indexed channel (`linux-64` and `noarch`) into `OUT_DIR`.
    Build {
        /// The directory to create.
        out_dir: PathBuf,
        /// Replace `OUT_DIR` if it exists.
        #[arg(long)]
        force: bool,
        /// The pyenv root to take CPython from [default: `$PYENV_ROOT`, `pyenv root` or `~/.pyenv`].
        #[arg(long)]
        pyenv_root: Option<PathBuf>,
        /// Where to cache downloaded wheels [default: <target>/env-test/wheels].
        #[arg(long)]
        wheel_cache: Option<PathBuf>,
    },
    /// Serve a channel directory over HTTP (GET and HEAD) until interrupted.
    Serve {
        /// The channel directory.
        dir: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: SocketAddr,
    },
    /// Print the path of the shared test channel, building it if needed.
    Path,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {err}");
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "  Caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let Command::Channel(command) = cli.command;
    match command {
        ChannelCommand::Build {
            out_dir,
            force,
            pyenv_root,
            wheel_cache,
        } => build(&out_dir, force, pyenv_root, wheel_cache),
        ChannelCommand::Serve { dir, addr } => {
            let server = ChannelServer::bind(&dir, addr)?;
            writeln!(std::io::stdout().lock(), "{}", server.url())?;
            writeln!(
                std::io::stderr().lock(),
                "Serving `{}` at {} (Ctrl-C to stop)",
                dir.display(),
                server.url()
            )?;
            server.wait();
            Ok(())
        }
        ChannelCommand::Path => {
            let channel = env_test::test_channel()?;
            writeln!(std::io::stdout().lock(), "{}", channel.path().display())?;
            Ok(())
        }
    }
}

fn build(
    out_dir: &Path,
    force: bool,
    pyenv_root: Option<PathBuf>,
    wheel_cache: Option<PathBuf>,
) -> Result<()> {
    let mut options = BuildOptions::discover()?;
    if let Some(pyenv_root) = pyenv_root {
        options.pyenv_root = pyenv_root;
    }
    if let Some(wheel_cache) = wheel_cache {
        options.wheel_cache = wheel_cache;
    }
    if out_dir.exists() {
        if !force {
            bail!(
                "`{}` already exists (use `--force` to replace it)",
                out_dir.display()
            );
        }
        fs::remove_dir_all(out_dir)?;
    }
    // Build next to OUT_DIR and rename, so OUT_DIR is either complete or absent.
    let parent = out_dir
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(parent)?;
    let temp = tempfile::Builder::new()
        .prefix(".env-test-channel-")
        .tempdir_in(parent)?;
    let summary = env_test::build_channel(temp.path(), &options)
        .with_context(|| format!("Failed to build a channel in `{}`", out_dir.display()))?;
    fs::rename(temp.keep(), out_dir)?;

    let mut stderr = std::io::stderr().lock();
    for package in &summary.packages {
        writeln!(
            stderr,
            "{:>9} KiB  {:>5} files  {}/{}",
            package.size / 1024,
            package.path_count,
            package.subdir.as_str(),
            package.file_name
        )?;
    }
    writeln!(
        stderr,
        "Built {} packages in {:.1} s",
        summary.packages.len(),
        summary.elapsed.as_secs_f64()
    )?;
    writeln!(
        std::io::stdout().lock(),
        "{}",
        fs::canonicalize(out_dir)?.display()
    )?;
    Ok(())
}
