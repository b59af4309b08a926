//! Where registry credentials are looked up when no `--username` is given: the auth files
//! Docker and podman write, in the order podman reads them; and the image's reproducible
//! `created` time. The caller reads the variables (env-settings' `Settings`); this module decides.

use std::path::PathBuf;

/// The `created` time of every image when `SOURCE_DATE_EPOCH` is not set: 2000-01-01, as
/// `pack`'s archives; a fixed value keeps the digest reproducible.
pub const DEFAULT_CREATED: u64 = 946_684_800;

/// The image's `created` time: `SOURCE_DATE_EPOCH` when it is set (and a number: the
/// settings parse it), else [`DEFAULT_CREATED`].
#[must_use]
pub fn created_time(source_date_epoch: Option<u64>) -> u64 {
    source_date_epoch.unwrap_or(DEFAULT_CREATED)
}

/// The variables that place the auth files.
#[derive(Debug, Clone, Default)]
pub struct AuthFileVars {
    /// `REGISTRY_AUTH_FILE`: the file podman, skopeo and buildah read first.
    pub registry_auth_file: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`: podman's `containers/auth.json` is there.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `DOCKER_CONFIG`: Docker's configuration directory (default `~/.docker`).
    pub docker_config: Option<PathBuf>,
}

impl AuthFileVars {
    /// The auth files to read, in the order podman reads them, then Docker's.
    #[must_use]
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(file) = &self.registry_auth_file {
            files.push(file.clone());
        }
        if let Some(dir) = &self.xdg_runtime_dir {
            files.push(dir.join("containers/auth.json"));
        }
        if let Some(home) = &self.home {
            files.push(home.join(".config/containers/auth.json"));
        }
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => files.push(dir.join("config.json")),
            (None, Some(home)) => files.push(home.join(".docker/config.json")),
            (None, None) => {}
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podmans_files_first_then_dockers() {
        let vars = AuthFileVars {
            registry_auth_file: Some("/a/auth.json".into()),
            xdg_runtime_dir: Some("/run/user/1".into()),
            home: Some("/home/u".into()),
            docker_config: None,
        };
        assert_eq!(
            vars.files(),
            [
                "/a/auth.json",
                "/run/user/1/containers/auth.json",
                "/home/u/.config/containers/auth.json",
                "/home/u/.docker/config.json",
            ]
            .map(PathBuf::from)
        );
        let docker = AuthFileVars {
            docker_config: Some("/d".into()),
            ..AuthFileVars::default()
        };
        assert_eq!(docker.files(), [PathBuf::from("/d/config.json")]);
        assert!(AuthFileVars::default().files().is_empty());
    }

    #[test]
    fn created_is_source_date_epoch_else_2000() {
        assert_eq!(created_time(None), DEFAULT_CREATED);
        assert_eq!(created_time(Some(1_700_000_000)), 1_700_000_000);
    }
}
