//! Which conda channels to use, and where to fetch them from.
//!
//! The spec names channels as the model's `conda.yaml` does (`conda-forge`, `defaults`, a
//! URL). `--override-channels` and `--channel` change that list, and so the key. Mirrors then
//! change only where each channel is fetched from (an Artifactory or Nexus proxy, a local
//! directory), so they do not change the key: a mirror serves the same packages.

use std::path::Path;

use rattler_conda_types::{Channel, ChannelConfig};
use url::Url;

use env_spec::redact::{redact_url, register_url};

use crate::CondaError;

/// Conda's `defaults` on Linux and macOS.
const DEFAULTS: &[&str] = &[
    "https://repo.anaconda.com/pkgs/main",
    "https://repo.anaconda.com/pkgs/r",
];

/// The channel settings of a run.
#[derive(Debug, Clone, Default)]
pub struct ChannelSettings {
    /// `(channel name or URL prefix, replacement URL or directory)` pairs.
    pub mirrors: Vec<(String, String)>,
    /// `--channel`: channels to use before (or, with `override_channels`, instead of) the
    /// model's.
    pub channels: Vec<String>,
    /// `--override-channels`: ignore the channels in the model's files.
    pub override_channels: bool,
}

/// A channel ready to query.
#[derive(Debug, Clone)]
pub struct ResolvedChannel {
    /// The name in the spec (`conda-forge`).
    pub name: String,
    /// The channel rattler fetches.
    pub channel: Channel,
    /// Its URL with secrets masked, for messages.
    pub display: String,
}

impl ChannelSettings {
    /// The channel names an environment is built from: the model's, changed by
    /// `--channel`/`--override-channels`. This is what goes into the key. A local path
    /// (`./chan`) becomes the `file://` URL of what it names from the working directory.
    #[must_use]
    pub fn effective(&self, model_channels: &[String]) -> Vec<String> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
        self.effective_in(model_channels, &cwd)
    }

    /// [`Self::effective`] with relative channel paths resolved against `cwd`.
    #[must_use]
    pub fn effective_in(&self, model_channels: &[String], cwd: &Path) -> Vec<String> {
        let mut out: Vec<String> = self.channels.clone();
        if !self.override_channels {
            out.extend(model_channels.iter().cloned());
        }
        // Keyed by what it resolves to: `./chan` from two directories is two channels, and
        // `./chan` and `/abs/chan` naming one directory are one (issue 23).
        for name in &mut out {
            if let Some(url) = local_channel_url(name, cwd) {
                *name = url;
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|c| c != "nodefaults" && seen.insert(c.clone()));
        if out.is_empty() {
            out.push("conda-forge".to_string());
        }
        out
    }

    /// Resolves channel names to fetchable channels, with mirrors applied.
    pub fn resolve(
        &self,
        names: &[String],
        cwd: &Path,
    ) -> Result<Vec<ResolvedChannel>, CondaError> {
        let config = ChannelConfig::default_with_root_dir(cwd.to_path_buf());
        for (_, to) in &self.mirrors {
            register_url(to);
        }
        let mut out = Vec::new();
        for name in names {
            let urls: Vec<String> = if name == "defaults" {
                DEFAULTS.iter().map(ToString::to_string).collect()
            } else {
                let channel = Channel::from_str(name, &config).map_err(|source| {
                    CondaError::InvalidChannel {
                        channel: redact_url(name),
                        source,
                    }
                })?;
                vec![
                    channel
                        .base_url
                        .url()
                        .as_str()
                        .trim_end_matches('/')
                        .to_string(),
                ]
            };
            for url in urls {
                let target = self.mirror(name, &url);
                register_url(&target);
                let channel = if target.contains("://") {
                    let parsed = Url::parse(&format!("{}/", target.trim_end_matches('/')))
                        .map_err(|_| CondaError::InvalidMirror {
                            mirror: redact_url(&target),
                        })?;
                    Channel::from_url(parsed)
                } else {
                    Channel::from_str(&target, &config).map_err(|source| {
                        CondaError::InvalidChannel {
                            channel: redact_url(&target),
                            source,
                        }
                    })?
                };
                let display = redact_url(channel.base_url.url().as_str().trim_end_matches('/'));
                // Two names mirrored to one place (`conda-forge` and `defaults` to one local
                // channel) are one channel.
                if out
                    .iter()
                    .any(|c: &ResolvedChannel| c.channel.base_url == channel.base_url)
                {
                    continue;
                }
                out.push(ResolvedChannel {
                    name: name.clone(),
                    channel,
                    display,
                });
            }
        }
        Ok(out)
    }

    /// Applies the mirror for a channel: an exact name match, else the longest URL prefix.
    fn mirror(&self, name: &str, url: &str) -> String {
        if let Some((_, to)) = self.mirrors.iter().find(|(from, _)| from == name) {
            return to.clone();
        }
        let best = self
            .mirrors
            .iter()
            .filter(|(from, _)| from.contains("://"))
            .filter(|(from, _)| {
                let from = from.trim_end_matches('/');
                url == from || url.starts_with(&format!("{from}/"))
            })
            .max_by_key(|(from, _)| from.len());
        match best {
            Some((from, to)) => {
                let from = from.trim_end_matches('/');
                format!("{}{}", to.trim_end_matches('/'), &url[from.len()..])
            }
            None => url.to_string(),
        }
    }
}

/// The `file://` URL of a channel given as a local path (`./chan`, `../chan`, `/abs/chan`,
/// `~/chan`), absolute and lexically normalised; `None` for names and URLs.
fn local_channel_url(name: &str, cwd: &Path) -> Option<String> {
    let path = if name == "~" || name.starts_with("~/") {
        let home = std::env::var_os("HOME")?;
        Path::new(&home).join(name.trim_start_matches('~').trim_start_matches('/'))
    } else if name.starts_with('/')
        || name == "."
        || name == ".."
        || name.starts_with("./")
        || name.starts_with("../")
    {
        cwd.join(name)
    } else {
        return None;
    };
    let mut normal = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    let url = Url::from_file_path(&normal).ok()?;
    Some(url.as_str().trim_end_matches('/').to_string())
}

/// Parses `--mirror FROM=TO` values.
pub fn parse_mirror(text: &str) -> Result<(String, String), CondaError> {
    match text.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_string(), to.to_string()))
        }
        _ => Err(CondaError::InvalidMirror {
            mirror: redact_url(text),
        }),
    }
}

/// The mirrors of a run, in precedence order: each `--mirror FROM=TO` flag (`flags`), then the
/// configured ones (`PYFUNC_ENV_MIRRORS`, then the config file, already merged into
/// `configured`) for the channels no flag names.
pub fn merge_mirrors<'a>(
    flags: &[String],
    configured: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<(String, String)>, CondaError> {
    let mut mirrors: Vec<(String, String)> = Vec::new();
    for text in flags {
        mirrors.push(parse_mirror(text)?);
    }
    for (from, to) in configured {
        if !mirrors.iter().any(|(f, _)| f == from) {
            mirrors.push((from.clone(), to.clone()));
        }
    }
    Ok(mirrors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_flag_wins_over_the_configured_mirror_of_its_channel() {
        let configured: std::collections::BTreeMap<String, String> = [
            ("conda-forge".to_string(), "https://config/cf".to_string()),
            ("bioconda".to_string(), "https://config/bio".to_string()),
        ]
        .into();
        let merged =
            merge_mirrors(&["conda-forge=https://flag/cf".to_string()], &configured).unwrap();
        assert_eq!(
            merged,
            [
                ("conda-forge".to_string(), "https://flag/cf".to_string()),
                ("bioconda".to_string(), "https://config/bio".to_string()),
            ]
        );
        let error = merge_mirrors(&["no-equals".to_string()], &configured).unwrap_err();
        assert!(
            matches!(error, CondaError::InvalidMirror { .. }),
            "{error:?}"
        );
    }

    fn settings(mirrors: &[(&str, &str)]) -> ChannelSettings {
        ChannelSettings {
            mirrors: mirrors
                .iter()
                .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
                .collect(),
            ..ChannelSettings::default()
        }
    }

    fn urls(settings: &ChannelSettings, names: &[&str]) -> Vec<String> {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        settings
            .resolve(&names, Path::new("/work"))
            .unwrap()
            .into_iter()
            .map(|c| c.channel.base_url.url().to_string())
            .collect()
    }

    #[test]
    fn names_and_defaults() {
        let plain = settings(&[]);
        assert_eq!(
            urls(&plain, &["conda-forge"]),
            ["https://conda.anaconda.org/conda-forge/"]
        );
        assert_eq!(
            urls(&plain, &["defaults"]),
            [
                "https://repo.anaconda.com/pkgs/main/",
                "https://repo.anaconda.com/pkgs/r/"
            ]
        );
    }

    #[test]
    fn mirrors_by_name_and_prefix() {
        let mirrored = settings(&[
            ("conda-forge", "https://mirror.example/cf"),
            (
                "https://repo.anaconda.com/pkgs",
                "https://artifactory.example/anaconda",
            ),
            ("bioconda", "/srv/channels/bio"),
        ]);
        assert_eq!(
            urls(&mirrored, &["conda-forge"]),
            ["https://mirror.example/cf/"]
        );
        assert_eq!(
            urls(&mirrored, &["defaults"]),
            [
                "https://artifactory.example/anaconda/main/",
                "https://artifactory.example/anaconda/r/"
            ]
        );
        assert_eq!(
            urls(&mirrored, &["bioconda"]),
            ["file:///srv/channels/bio/"]
        );
        assert_eq!(
            urls(&mirrored, &["pytorch"]),
            ["https://conda.anaconda.org/pytorch/"]
        );
    }

    #[test]
    fn override_and_extra_channels() {
        let model = vec!["conda-forge".to_string(), "nodefaults".to_string()];
        let extra = ChannelSettings {
            channels: vec!["mine".into()],
            ..ChannelSettings::default()
        };
        assert_eq!(extra.effective(&model), ["mine", "conda-forge"]);
        let only = ChannelSettings {
            channels: vec!["mine".into()],
            override_channels: true,
            ..ChannelSettings::default()
        };
        assert_eq!(only.effective(&model), ["mine"]);
    }

    #[test]
    fn local_channel_paths_are_keyed_by_what_they_name() {
        let settings = ChannelSettings {
            channels: vec!["./chan".into()],
            ..ChannelSettings::default()
        };
        let here = settings.effective_in(&[], Path::new("/work/a"));
        let there = settings.effective_in(&[], Path::new("/work/b"));
        assert_ne!(
            here, there,
            "two different `./chan` directories share a key"
        );
        assert_eq!(here, ["file:///work/a/chan"]);
        // The same directory named three ways is one channel.
        let model = vec!["../a/chan/".to_string(), "/work/a/./chan".to_string()];
        let plain = ChannelSettings::default();
        assert_eq!(
            plain.effective_in(&model, Path::new("/work/b")),
            ["file:///work/a/chan"]
        );
        // Names and URLs are kept as written.
        let named = vec!["conda-forge".to_string(), "https://x.example/c".to_string()];
        assert_eq!(plain.effective_in(&named, Path::new("/work")), named);
        // And the URL resolves where the path did.
        assert_eq!(
            urls(&plain, &["file:///work/a/chan".to_string().as_str()]),
            ["file:///work/a/chan/"]
        );
    }

    #[test]
    fn mirror_secrets_are_redacted() {
        let mirrored = settings(&[("conda-forge", "https://u:pa55word@mirror.example/cf")]);
        let resolved = mirrored
            .resolve(&["conda-forge".into()], Path::new("/"))
            .unwrap();
        assert_eq!(resolved[0].display, "https://u:****@mirror.example/cf");
    }
}
