//! The conda layer: repodata through rattler's gateway, a resolvo solve, rattler's installer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rattler::install::Installer;
use rattler::package_cache::PackageCache;
use rattler_conda_types::{
    GenericVirtualPackage, MatchSpec, ParseStrictness, RepoDataRecord, Subdir,
};
use rattler_repodata_gateway::fetch::CacheAction;
use rattler_repodata_gateway::{Gateway, SourceConfig};
use rattler_solve::{SolverImpl, SolverTask};

use crate::channels::ResolvedChannel;
use crate::reporter::InstallReporter;
use crate::{CondaError, Reporter};

/// Everything the conda layer needs.
pub struct CondaContext<'a> {
    /// Channels in priority order.
    pub channels: &'a [ResolvedChannel],
    /// The target platform.
    pub platform: Subdir,
    /// Virtual packages of the machine.
    pub virtual_packages: &'a [GenericVirtualPackage],
    /// The repodata cache directory.
    pub repodata_cache: PathBuf,
    /// The package cache directory.
    pub package_cache: PathBuf,
    /// Use only what is cached.
    pub offline: bool,
    /// `--exclude-newer`: solve with packages published before this time only (RFC 3339, or a
    /// date meaning 00:00 UTC of that day); exact pins are exempt, as for PyPI packages.
    pub exclude_newer: Option<&'a str>,
}

/// The solver's cutoff for `--exclude-newer TIME`: packages published after `text` are left
/// out, except records matching an exact pin of `specs` (`python=3.11.7`, `numpy==1.26.4`),
/// which the model asked for by name and version. Records without any timestamp (old
/// channels) cannot be judged and are kept.
pub fn exclude_newer(
    text: &str,
    specs: &[MatchSpec],
) -> Result<rattler_solve::ExcludeNewer, CondaError> {
    let cutoff = text
        .parse::<jiff::Timestamp>()
        .or_else(|_| {
            text.parse::<jiff::civil::Date>()
                .and_then(|date| date.to_zoned(jiff::tz::TimeZone::UTC))
                .map(|zoned| zoned.timestamp())
        })
        .map_err(|_| CondaError::InvalidExcludeNewer {
            value: text.to_string(),
        })?;
    let mut config = rattler_solve::ExcludeNewer::from_datetime(cutoff)
        .with_timestamp_policy(rattler_solve::TimestampPolicy::AllowMissing);
    for spec in specs.iter().filter(|spec| is_exact_pin(spec)) {
        // A spec the solver cannot use as an exemption (no exact name) stays under the cutoff.
        if let Ok(exempted) = config.clone().with_exemption(spec.clone()) {
            config = exempted;
        }
    }
    Ok(config)
}

/// Whether a conda spec pins one version (`python=3.11.7`, `numpy==1.26.4`, `pkg 1.2.3`):
/// three or more version segments and no range, wildcard or alternative before a trailing `.*`.
fn is_exact_pin(spec: &MatchSpec) -> bool {
    let Some(version) = &spec.version else {
        return false;
    };
    let text = version.to_string();
    let text = text.trim_start_matches("==").trim_start_matches('=');
    let text = text.strip_suffix(".*").unwrap_or(text);
    !text.is_empty()
        && !text.contains(['<', '>', '!', '~', ',', '|', '*', ' '])
        && text.matches('.').count() >= 2
}

/// Parses normalised spec strings back into match specs.
pub fn parse_specs(specs: &[String]) -> Result<Vec<MatchSpec>, CondaError> {
    specs
        .iter()
        .map(|s| {
            MatchSpec::from_str(s, ParseStrictness::Lenient).map_err(|source| {
                CondaError::InvalidSpec {
                    spec: s.clone(),
                    source,
                }
            })
        })
        .collect()
}

fn channel_list(ctx: &CondaContext<'_>) -> String {
    ctx.channels
        .iter()
        .map(|c| format!("`{}`", c.display))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fetches repodata and solves `specs`.
pub async fn solve(
    ctx: &CondaContext<'_>,
    specs: &[MatchSpec],
) -> Result<Vec<RepoDataRecord>, CondaError> {
    let source_config = SourceConfig {
        cache_action: if ctx.offline {
            CacheAction::ForceCacheOnly
        } else {
            CacheAction::CacheOrFetch
        },
        ..SourceConfig::default()
    };
    let gateway = Gateway::builder()
        .with_cache_dir(&ctx.repodata_cache)
        .with_channel_config(rattler_repodata_gateway::ChannelConfig {
            default: source_config,
            per_channel: std::collections::HashMap::new(),
        })
        .finish();
    let channels: Vec<_> = ctx.channels.iter().map(|c| c.channel.clone()).collect();
    let repodata = gateway
        .query(channels, [ctx.platform, Subdir::NoArch], specs.to_vec())
        .recursive(true)
        .execute()
        .await
        .map_err(|source| {
            if ctx.offline {
                CondaError::OfflineNoRepodata {
                    channels: channel_list(ctx),
                    source,
                }
            } else {
                CondaError::ChannelUnreachable {
                    channels: channel_list(ctx),
                    source,
                }
            }
        })?;

    // A spec whose package no channel has gets its own error: it is usually a typo or a
    // missing channel, and resolvo's explanation would bury that.
    let available: HashSet<&str> = repodata
        .iter()
        .flat_map(|r| r.iter())
        .map(|r| r.package_record.name.as_normalized())
        .collect();
    let virtual_names: HashSet<&str> = ctx
        .virtual_packages
        .iter()
        .map(|p| p.name.as_normalized())
        .collect();
    for spec in specs {
        if let Some(name) = spec.name.as_exact()
            && !available.contains(name.as_normalized())
            && !virtual_names.contains(name.as_normalized())
        {
            return Err(CondaError::PackageNotFound {
                spec: spec.to_string(),
                channels: channel_list(ctx),
                platform: ctx.platform.to_string(),
            });
        }
    }

    let mut task: SolverTask<_> = repodata.iter().collect();
    task.specs = specs.to_vec();
    task.virtual_packages = ctx.virtual_packages.to_vec();
    task.exclude_newer = ctx
        .exclude_newer
        .map(|text| exclude_newer(text, specs))
        .transpose()?;
    // Solving takes milliseconds for real model specs; run it on this thread.
    match rattler_solve::resolvo::Solver.solve(task) {
        Ok(result) => Ok(result.records),
        Err(rattler_solve::SolveError::Unsolvable(reasons)) => Err(CondaError::Unsolvable {
            specs: specs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            explanation: reasons.join("\n"),
        }),
        Err(other) => Err(CondaError::Internal {
            message: other.to_string(),
        }),
    }
}

/// Installs `records` into `prefix` (absolute) with rattler's installer.
pub async fn install(
    ctx: &CondaContext<'_>,
    prefix: &Path,
    records: Vec<RepoDataRecord>,
    specs: Vec<MatchSpec>,
    reporter: Arc<dyn Reporter>,
) -> Result<(), CondaError> {
    let cache = PackageCache::new(&ctx.package_cache);
    if ctx.offline {
        let index = cache.index().await.map_err(|source| CondaError::Io {
            path: ctx.package_cache.clone(),
            source,
        })?;
        let missing: Vec<String> = records
            .iter()
            .filter(|r| r.url.scheme() != "file" && !index.contains_record(r))
            .map(|r| r.identifier.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(CondaError::OfflinePackagesMissing {
                packages: missing.join(", "),
            });
        }
    }
    Installer::new()
        .with_package_cache(cache)
        .with_target_platform(ctx.platform)
        .with_requested_specs(specs)
        .with_execute_link_scripts(false)
        .with_reporter(InstallReporter {
            inner: reporter,
            names: std::sync::Mutex::new(Vec::new()),
        })
        .install(prefix, records)
        .await
        .map_err(|source| CondaError::Install { source })?;
    Ok(())
}

#[cfg(test)]
mod exclude_newer_tests {
    use super::*;

    fn spec(text: &str) -> MatchSpec {
        MatchSpec::from_str(text, ParseStrictness::Lenient).unwrap()
    }

    #[test]
    fn only_single_version_pins_are_exact() {
        for text in [
            "python=3.11.7",
            "numpy==1.26.4",
            "pkg 1.2.3",
            "python 3.11.7.*",
        ] {
            assert!(is_exact_pin(&spec(text)), "{text}");
        }
        for text in [
            "python",
            "numpy>=1.26",
            "numpy=1.26",
            "pkg 1.*",
            "a >=1,<2",
            "b 1.2.3|1.2.4",
        ] {
            assert!(!is_exact_pin(&spec(text)), "{text}");
        }
    }

    #[test]
    fn dates_and_times_parse_and_anything_else_is_refused() {
        assert!(exclude_newer("2024-06-01", &[]).is_ok());
        assert!(exclude_newer("2024-06-01T12:00:00Z", &[spec("python=3.11.7")]).is_ok());
        assert!(matches!(
            exclude_newer("last tuesday", &[]),
            Err(CondaError::InvalidExcludeNewer { .. })
        ));
    }
}
