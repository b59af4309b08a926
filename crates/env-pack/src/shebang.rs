//! Console-script shebangs made position-independent.
//!
//! Installers write the interpreter's absolute path into each console script
//! (`#!/cache/envs-v1/<key>/bin/python3.11`, or for long paths uv's and distlib's `/bin/sh`
//! form). After the environment is unpacked elsewhere that path does not exist. The archive
//! gets a `/bin/sh` trampoline instead, the trick uv uses for `--relocatable` venvs: `sh` runs
//! the `exec` line, which starts the `python3.X` next to the script's real location; Python
//! reads the same lines as a string literal and runs the rest of the script.
//!
//! ```text
//! #!/bin/sh
//! '''exec' "$(dirname -- "$(realpath -- "$0")")"/python3.11 "$0" "$@"
//! ' '''
//! ```
//!
//! `realpath` follows a symlink to the script (`~/bin/tool -> env/bin/tool`), so the
//! interpreter is always the one beside the script. Needs `sh`, `realpath` and `dirname`
//! (coreutils or busybox) where the script runs.

/// The trampoline's first three lines for interpreter `name` (a file in the script's
/// directory) and its extra arguments.
#[must_use]
pub fn trampoline(name: &str, args: &str) -> String {
    let args = if args.is_empty() {
        String::new()
    } else {
        format!(" {args}")
    };
    format!(
        "#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")\"/{name}{args} \"$0\" \"$@\"\n' '''\n"
    )
}

/// Rewrites `script` if its shebang names a Python in `bin_dirs` (the prefix's `bin/`, as
/// written and as canonical path); `None` when it does not, or the result would be unsafe.
#[must_use]
pub fn rewrite(script: &[u8], bin_dirs: &[String]) -> Option<Vec<u8>> {
    let (name, args, rest) = parse(script, bin_dirs)?;
    let mut out = trampoline(&name, &args).into_bytes();
    out.extend_from_slice(&script[rest..]);
    Some(out)
}

/// Rewrites `script` like [`rewrite`], for an environment that will be at a known place: a
/// plain shebang naming the interpreter in `bin_dir` (no shell needed), whichever of the two
/// forms the installer wrote. `None` as for [`rewrite`], or when the line would be longer than
/// the 127 bytes older kernels read.
#[must_use]
pub fn retarget(script: &[u8], bin_dirs: &[String], bin_dir: &str) -> Option<Vec<u8>> {
    let (name, args, rest) = parse(script, bin_dirs)?;
    let line = if args.is_empty() {
        format!("#!{bin_dir}/{name}\n")
    } else {
        format!("#!{bin_dir}/{name} {args}\n")
    };
    if line.len() > 128 {
        return None;
    }
    let mut out = line.into_bytes();
    out.extend_from_slice(&script[rest..]);
    Some(out)
}

/// The interpreter's name and arguments when `script`'s shebang runs a Python in `bin_dirs`,
/// and where the rest of the script starts.
fn parse(script: &[u8], bin_dirs: &[String]) -> Option<(String, String, usize)> {
    if !script.starts_with(b"#!") {
        return None;
    }
    let first_end = script.iter().position(|b| *b == b'\n')?;
    let first = std::str::from_utf8(&script[2..first_end]).ok()?.trim();
    // `#!/prefix/bin/python3.11 [args]`.
    if let Some((name, args)) = direct(first, bin_dirs) {
        return Some((name, args, first_end + 1));
    }
    // uv's and distlib's form for long or spaced paths:
    // `#!/bin/sh` / `'''exec' '/prefix/bin/python' "$0" "$@"` / `' '''`.
    if first == "/bin/sh" {
        let rest = &script[first_end + 1..];
        let second_end = rest.iter().position(|b| *b == b'\n')?;
        let second = std::str::from_utf8(&rest[..second_end]).ok()?;
        // rattler's and conda's two-line form:
        // `#!/bin/sh` / `'''exec' "/prefix/bin/python3.11" "$0" "$@" #'''`.
        if let Some(quoted) = second
            .strip_prefix("'''exec' \"")
            .and_then(|s| s.strip_suffix(" \"$0\" \"$@\" #'''"))
        {
            let (path, args) = quoted.split_once('"')?;
            let (name, _) = direct(path, bin_dirs)?;
            return Some((
                name,
                args.trim().to_string(),
                first_end + 1 + second_end + 1,
            ));
        }
        let third_rest = &rest[second_end + 1..];
        let third_end = third_rest.iter().position(|b| *b == b'\n')?;
        let third = std::str::from_utf8(&third_rest[..third_end]).ok()?;
        if third.trim() != "' '''" {
            return None;
        }
        let quoted = second
            .strip_prefix("'''exec' '")?
            .strip_suffix(" \"$0\" \"$@\"")?;
        let (path, args) = quoted.split_once('\'')?;
        let (name, _) = direct(path, bin_dirs)?;
        return Some((
            name,
            args.trim().to_string(),
            first_end + 1 + second_end + 1 + third_end + 1,
        ));
    }
    None
}

/// `(interpreter name, arguments)` when `line` (a shebang without `#!`) runs a Python in one
/// of `bin_dirs`.
fn direct(line: &str, bin_dirs: &[String]) -> Option<(String, String)> {
    let (path, args) = match line.split_once(char::is_whitespace) {
        Some((path, args)) => (path, args.trim()),
        None => (line, ""),
    };
    let name = bin_dirs.iter().find_map(|dir| {
        path.strip_prefix(dir.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
    })?;
    let safe = |text: &str| {
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' '))
    };
    (name.starts_with("python") && !name.contains('/') && safe(name) && safe(args))
        .then(|| (name.to_string(), args.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str =
        "# -*- coding: utf-8 -*-\nimport sys\nprint('args', sys.argv[1:], sys.executable)\n";

    fn bins() -> Vec<String> {
        vec!["/cache/envs-v1/abc/bin".to_string()]
    }

    #[test]
    fn rewrites_direct_shebangs() {
        let script = format!("#!/cache/envs-v1/abc/bin/python3.11\n{SCRIPT}");
        let out = String::from_utf8(rewrite(script.as_bytes(), &bins()).unwrap()).unwrap();
        assert_eq!(out, format!("{}{SCRIPT}", trampoline("python3.11", "")));
        let with_args = format!("#!/cache/envs-v1/abc/bin/python -E\n{SCRIPT}");
        let out = String::from_utf8(rewrite(with_args.as_bytes(), &bins()).unwrap()).unwrap();
        assert!(out.contains("\"/python -E \"$0\""), "{out}");
    }

    #[test]
    fn rewrites_the_sh_form() {
        let script = format!(
            "#!/bin/sh\n'''exec' '/cache/envs-v1/abc/bin/python' \"$0\" \"$@\"\n' '''\n{SCRIPT}"
        );
        let out = String::from_utf8(rewrite(script.as_bytes(), &bins()).unwrap()).unwrap();
        assert_eq!(out, format!("{}{SCRIPT}", trampoline("python", "")));
    }

    /// rattler's form for long prefixes; and every form retargeted to a known place.
    #[test]
    fn rewrites_the_two_line_sh_form_and_retargets() {
        let script = format!(
            "#!/bin/sh\n'''exec' \"/cache/envs-v1/abc/bin/python3.11\" \"$0\" \"$@\" #'''\n{SCRIPT}"
        );
        let out = String::from_utf8(rewrite(script.as_bytes(), &bins()).unwrap()).unwrap();
        assert_eq!(out, format!("{}{SCRIPT}", trampoline("python3.11", "")));
        for script in [
            script.clone(),
            format!("#!/cache/envs-v1/abc/bin/python3.11\n{SCRIPT}"),
            format!(
                "#!/bin/sh\n'''exec' '/cache/envs-v1/abc/bin/python3.11' \"$0\" \"$@\"\n' '''\n{SCRIPT}"
            ),
        ] {
            let out = retarget(script.as_bytes(), &bins(), "/opt/env/bin").unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("#!/opt/env/bin/python3.11\n{SCRIPT}")
            );
        }
    }

    #[test]
    fn leaves_other_scripts_alone() {
        for script in [
            "#!/usr/bin/env python3\nprint(1)\n",
            "#!/other/bin/python3.11\nprint(1)\n",
            "#!/bin/sh\necho hello\n",
            "#!/cache/envs-v1/abc/bin/perl\n",
            "no shebang",
            "#!/cache/envs-v1/abc/bin/python3.11",
        ] {
            assert_eq!(rewrite(script.as_bytes(), &bins()), None, "{script}");
        }
    }

    /// The trampoline runs: from its own directory, through a symlink, with arguments that
    /// need quoting, and Python sees only a string literal.
    #[test]
    fn trampoline_runs_from_anywhere() {
        let python = [
            "/root/.pyenv/versions/3.11.7/bin/python3.11",
            "/usr/bin/python3",
        ]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file());
        let Some(python) = python else { return };
        let temp = tempfile::tempdir().unwrap();
        let bin = temp.path().join("env with space/bin");
        fs_err::create_dir_all(&bin).unwrap();
        fs_err::os::unix::fs::symlink(python, bin.join("python3")).unwrap();
        let script = bin.join("tool");
        let text = format!("{}{SCRIPT}", trampoline("python3", ""));
        fs_err::write(&script, text).unwrap();
        fs_err::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let link = temp.path().join("link-to-tool");
        fs_err::os::unix::fs::symlink(&script, &link).unwrap();
        for path in [&script, &link] {
            let output = std::process::Command::new(path)
                .args(["a b", "$HOME"])
                .env_remove("PYTHONPATH")
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(stdout.starts_with("args ['a b', '$HOME'] "), "{stdout}");
            assert!(
                stdout.trim_end().ends_with("env with space/bin/python3"),
                "{stdout}"
            );
        }
    }
}
