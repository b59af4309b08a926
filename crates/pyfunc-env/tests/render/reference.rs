//! `docs/reference/cli.md`, generated from the clap definitions and [`EnvVars`], and the test
//! that fails when the committed page is stale (as uv does for its CLI reference).
//!
//! `scripts/generate-docs` rewrites the page (`PYFUNC_ENV_UPDATE_DOCS=1` on this test).

use std::fmt::Write as _;
use std::path::Path;

/// The whole page.
fn page() -> String {
    let command = pyfunc_env::cli_command();
    let mut out = String::from(
        "# CLI reference\n\n\
         Generated from the binary's own definitions by `scripts/generate-docs`; do not edit by\n\
         hand (a test fails when this page and the code disagree). Every command also has\n\
         `--help`; `-h` gives the short form.\n\n",
    );
    out.push_str("## Global options\n\nThese apply to every command.\n\n");
    let globals: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.is_global_set())
        .collect();
    for arg in globals {
        option(&mut out, arg);
    }
    out.push('\n');
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        section(&mut out, sub, "pyfunc-env");
    }
    out.push_str(&env_vars());
    out
}

fn section(out: &mut String, command: &clap::Command, parent: &str) {
    let path = format!("{parent} {}", command.get_name());
    let _ = writeln!(out, "## `{path}`\n");
    let about = command
        .get_long_about()
        .or_else(|| command.get_about())
        .map(ToString::to_string)
        .unwrap_or_default();
    if !about.is_empty() {
        let _ = writeln!(out, "{}\n", about.trim());
    }
    let mut usage = command.clone().bin_name(&path);
    let usage = usage.render_usage().to_string();
    let _ = writeln!(out, "```text\n{}\n```\n", usage.trim());
    let positionals: Vec<&clap::Arg> = command
        .get_positionals()
        .filter(|a| !a.is_hide_set())
        .collect();
    if !positionals.is_empty() {
        out.push_str("Arguments:\n\n");
        for arg in positionals {
            option(out, arg);
        }
        out.push('\n');
    }
    let options: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set() && !a.is_global_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !options.is_empty() {
        out.push_str("Options:\n\n");
        for arg in options {
            option(out, arg);
        }
        out.push('\n');
    }
    if let Some(after) = command.get_after_long_help().or(command.get_after_help()) {
        let _ = writeln!(out, "```text\n{}\n```\n", after.to_string().trim());
    }
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        section(out, sub, &path);
    }
}

/// One bullet: the spelling, the help text, and what clap knows (values, default, variable).
fn option(out: &mut String, arg: &clap::Arg) {
    let value_names: Vec<String> = arg
        .get_value_names()
        .map(|names| names.iter().map(|n| format!("<{n}>")).collect())
        .unwrap_or_default();
    let takes_value = arg.get_action().takes_values();
    let mut spelling = Vec::new();
    if let Some(short) = arg.get_short() {
        spelling.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        spelling.push(format!("--{long}"));
    }
    let mut name = if arg.is_positional() {
        value_names
            .first()
            .cloned()
            .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()))
    } else {
        spelling.join(", ")
    };
    if !arg.is_positional() && takes_value {
        let value = value_names
            .first()
            .cloned()
            .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
        let _ = write!(name, " {value}");
    }
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    // Help text may end with a hand-written `[env: X=]`; clap's own is added below.
    let help = help.trim().replace('\n', " ");
    let mut facts = Vec::new();
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if takes_value && !possible.is_empty() && arg.get_action().takes_values() {
        facts.push(format!("values: {}", possible.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().to_string())
        .collect();
    if takes_value && !defaults.is_empty() {
        facts.push(format!("default: `{}`", defaults.join(",")));
    }
    if let Some(env) = arg.get_env()
        && !help.contains("[env:")
    {
        facts.push(format!("env: `{}`", env.to_string_lossy()));
    }
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join("; "))
    };
    let _ = writeln!(out, "- `{name}`: {help}{facts}");
}

/// The variables of [`pyfunc_env::EnvVars`], from the doc comments of its constants.
fn env_vars() -> String {
    let source = include_str!("../../../env-settings/src/env_vars.rs");
    let body = source
        .split_once("impl EnvVars {")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split_once("\n}\n").map(|(body, _)| body))
        .expect("env_vars.rs has an `impl EnvVars` block");
    let mut out = String::from(
        "## Environment variables\n\n\
         Every variable pyfunc-env reads itself (MLflow's, AWS's, Google's and Azure's own\n\
         settings for model URIs are in the [model URIs guide](../guides/model-uris.md)).\n\
         A flag wins over its variable, a variable over the configuration file.\n\n\
         | variable | meaning |\n|---|---|\n",
    );
    let mut doc = Vec::new();
    let mut constant: Option<String> = None;
    // Constants may be wrapped by rustfmt; a constant ends at its `;`.
    for line in body.lines().map(str::trim) {
        if let Some(text) = constant.as_mut() {
            // A constant rustfmt wrapped: `pub const NAME: &'static str =` then `"NAME";`.
            text.push_str(line);
        } else if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_string());
            continue;
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            constant = Some(rest.to_string());
        } else {
            if !line.is_empty() && !line.starts_with("//") {
                doc.clear();
            }
            continue;
        }
        let Some(text) = constant.take_if(|text| text.ends_with(';')) else {
            continue;
        };
        // Each constant is named after its variable (some take the value from env-source's
        // list of MLflow's names, so the name is what the source spells out).
        let value = text
            .split(':')
            .next()
            .expect("split yields at least one piece")
            .trim();
        let _ = writeln!(out, "| `{value}` | {} |", doc.join(" ").replace('|', "\\|"));
        doc.clear();
    }
    out
}

#[test]
fn the_cli_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference/cli.md");
    let generated = page();
    if std::env::var_os("PYFUNC_ENV_UPDATE_DOCS").is_some() {
        fs_err::write(&path, &generated).unwrap();
        return;
    }
    let committed = fs_err::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run scripts/generate-docs and commit the result",
        path.display()
    );
}
