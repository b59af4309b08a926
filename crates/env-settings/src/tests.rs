//! Precedence (flag, variable, file, default) and errors that name their setting, over a
//! plain map of variables and a real configuration file.

use std::collections::BTreeMap;

use super::*;

struct Setup {
    dir: tempfile::TempDir,
    vars: BTreeMap<&'static str, String>,
}

impl Setup {
    /// An empty home: no configuration file, the default cache under it.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = BTreeMap::new();
        vars.insert(EnvVars::HOME, dir.path().display().to_string());
        Self { dir, vars }
    }

    fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join(".config/pyfunc-env/config.toml");
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, text).unwrap();
        path
    }

    fn var(mut self, name: &'static str, value: &str) -> Self {
        self.vars.insert(name, value.to_string());
        self
    }

    fn resolve(&self, options: &Options) -> Result<Settings, SettingsError> {
        Settings::resolve(options, |name| self.vars.get(name).cloned())
    }
}

#[test]
fn defaults_come_from_home() {
    let setup = Setup::new();
    let settings = setup.resolve(&Options::default()).unwrap();
    assert_eq!(
        settings.cache_dir,
        setup.dir.path().join(".cache/pyfunc-env")
    );
    assert_eq!(settings.lock_timeout, Duration::from_secs(300));
    assert_eq!(settings.remote_cache_timeout, env_remote::DEFAULT_TIMEOUT);
    assert_eq!(settings.config_file, None);
    // XDG_CACHE_HOME wins over HOME; neither is an error that says what to pass.
    let xdg = setup.dir.path().join("xdg");
    let setup = setup.var(EnvVars::XDG_CACHE_HOME, xdg.to_str().unwrap());
    let settings = setup.resolve(&Options::default()).unwrap();
    assert_eq!(settings.cache_dir, xdg.join("pyfunc-env"));
    let error = Settings::resolve(&Options::default(), |_| None).unwrap_err();
    assert!(matches!(error, SettingsError::NoCacheDir), "{error}");
}

#[test]
fn a_flag_wins_over_the_variable_and_the_variable_over_the_file() {
    let setup = Setup::new();
    let file = setup.config(
        "cache-dir = \"/from/file\"\nlock-timeout = 7\nuv = \"/file/uv\"\noffline = true\n\
         [mirrors]\n\"conda-forge\" = \"https://file/cf\"\n\"bioconda\" = \"https://file/bc\"\n",
    );
    let settings = setup.resolve(&Options::default()).unwrap();
    assert_eq!(settings.config_file.as_deref(), Some(file.as_path()));
    assert_eq!(settings.cache_dir, PathBuf::from("/from/file"));
    assert_eq!(settings.lock_timeout, Duration::from_secs(7));
    assert_eq!(settings.uv, Some(PathBuf::from("/file/uv")));
    assert!(settings.offline);
    let setup = setup
        .var(EnvVars::PYFUNC_ENV_LOCK_TIMEOUT, "9")
        .var(EnvVars::PYFUNC_ENV_UV, "/var/uv")
        .var(EnvVars::PYFUNC_ENV_MIRRORS, "conda-forge=https://var/cf");
    let options = Options {
        cache_dir: Some("/from/flag".into()),
        ..Options::default()
    };
    let settings = setup.resolve(&options).unwrap();
    assert_eq!(settings.cache_dir, PathBuf::from("/from/flag"));
    assert_eq!(settings.lock_timeout, Duration::from_secs(9));
    assert_eq!(settings.uv, Some(PathBuf::from("/var/uv")));
    // The variable's mirrors replace the file's of the same name and keep the others.
    assert_eq!(settings.mirrors["conda-forge"], "https://var/cf");
    assert_eq!(settings.mirrors["bioconda"], "https://file/bc");
    // An empty variable is unset.
    let setup = setup.var(EnvVars::PYFUNC_ENV_LOCK_TIMEOUT, "");
    let settings = setup.resolve(&options).unwrap();
    assert_eq!(settings.lock_timeout, Duration::from_secs(7));
}

#[test]
fn bad_values_name_the_variable_or_the_file() {
    let setup = Setup::new().var(EnvVars::PYFUNC_ENV_LOCK_TIMEOUT, "soon");
    let error = setup.resolve(&Options::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Invalid `PYFUNC_ENV_LOCK_TIMEOUT`: `soon` is not a number of seconds"
    );
    let setup = Setup::new().var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TIMEOUT, " 5 ");
    let settings = setup.resolve(&Options::default()).unwrap();
    assert_eq!(settings.remote_cache_timeout, Duration::from_secs(5));
    let setup = Setup::new().var(EnvVars::PYFUNC_ENV_MIRRORS, "conda-forge");
    let error = setup.resolve(&Options::default()).unwrap_err();
    assert_eq!(error.to_string(), "Invalid `PYFUNC_ENV_MIRRORS`");
    let setup = Setup::new();
    let file = setup.config("remote-cache = \"ftp://nowhere\"\n");
    let error = setup.resolve(&Options::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("Invalid `remote-cache` in {}", file.display())
    );
    let setup = Setup::new().var(EnvVars::PYFUNC_ENV_REMOTE_CACHE, "ftp://nowhere");
    let error = setup.resolve(&Options::default()).unwrap_err();
    assert_eq!(error.to_string(), "Invalid `PYFUNC_ENV_REMOTE_CACHE`");
    let missing = setup.dir.path().join("missing.toml");
    let error = setup
        .resolve(&Options {
            config_file: Some(missing.clone()),
            ..Options::default()
        })
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("Configuration file `{}` does not exist", missing.display())
    );
}

#[test]
fn signing_flags_replace_the_variables_and_keys_must_be_trusted_to_be_required() {
    let setup = Setup::new();
    let pair = env_remote::sign::keygen("ci-1", setup.dir.path()).unwrap();
    let other = env_remote::sign::keygen("ci-2", setup.dir.path()).unwrap();
    let setup = setup
        .var(
            EnvVars::PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS,
            &other.public.to_string(),
        )
        .var(
            EnvVars::PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY,
            "/nonexistent/ci.secret",
        );
    // The variable's sign key is read, and a bad one is named by the variable.
    let error = setup.resolve(&Options::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Invalid `PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY`"
    );
    let options = Options {
        remote_cache_sign_key: Some(pair.secret.clone()),
        remote_cache_trusted_keys: vec![pair.public.clone()],
        remote_cache_require_signed: true,
        ..Options::default()
    };
    let settings = setup.resolve(&options).unwrap();
    assert!(settings.remote_cache_signer.is_some());
    assert_eq!(
        settings.remote_cache_trusted_keys,
        std::slice::from_ref(&pair.public)
    );
    assert!(settings.remote_cache_require_signed);
    let bad_flag = Options {
        remote_cache_sign_key: Some("/nonexistent/flag.secret".into()),
        ..Options::default()
    };
    let error = setup.resolve(&bad_flag).unwrap_err();
    assert_eq!(error.to_string(), "Invalid `--remote-cache-sign-key`");
    // A flag's trusted keys win without reading the variable: a bad variable does not stop a
    // command that names its keys (before env-settings, the variable was parsed first and
    // its error ended the run).
    let bad_variable = Setup::new().var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS, "bad");
    assert!(bad_variable.resolve(&Options::default()).is_err());
    let with_flag = Options {
        remote_cache_trusted_keys: vec![pair.public.clone()],
        ..Options::default()
    };
    let settings = bad_variable.resolve(&with_flag).unwrap();
    assert_eq!(
        settings.remote_cache_trusted_keys,
        std::slice::from_ref(&pair.public)
    );
    // Required signatures with no trusted key could never pull anything.
    let setup = Setup::new().var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED, "1");
    let error = setup.resolve(&Options::default()).unwrap_err();
    assert!(
        matches!(error, SettingsError::RequireSignedWithoutKeys),
        "{error}"
    );
    let setup = Setup::new().var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED, "off");
    assert!(
        !setup
            .resolve(&Options::default())
            .unwrap()
            .remote_cache_require_signed
    );
}

#[test]
fn offline_leaves_out_a_network_remote_but_not_a_directory() {
    let setup = Setup::new().var(EnvVars::PYFUNC_ENV_REMOTE_CACHE, "s3://bucket/envs");
    let options = Options {
        offline: true,
        ..Options::default()
    };
    let settings = setup.resolve(&options).unwrap();
    assert!(settings.remote_cache(None, false).is_none());
    let local = env_remote::RemoteUrl::parse("file:///shared/envs").unwrap();
    assert!(settings.remote_cache(Some(&local), false).is_some());
}

#[test]
fn a_shown_document_masks_secrets_in_keys_values_and_lists() {
    let shown = mask_secrets(serde_json::json!({
        "mirrors": {"https://bob:hunter22@old.example/": "https://conda.anaconda.org/t/tk-0123456789/x"},
        "remote_cache": "az://models/envs?sv=2022-11-02&sig=c2lnbmF0dXJl",
        "list": ["https://alice:s3cret@m.example/"],
        "offline": true,
    }));
    let text = shown.to_string();
    for secret in ["hunter22", "tk-0123456789", "c2lnbmF0dXJl", "s3cret"] {
        assert!(!text.contains(secret), "`{secret}` shown: {text}");
    }
    assert_eq!(shown["offline"], true);
    assert_eq!(shown["list"][0], "https://alice:****@m.example/");
}

/// `--color` wins; under `auto`, `NO_COLOR` over `FORCE_COLOR` over the terminal; an empty
/// variable is unset.
#[test]
fn color_flag_then_no_color_then_force_color_then_terminal() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            (pairs.iter())
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_string())
        }
    };
    assert!(crate::use_color(
        ColorChoice::Always,
        vars(&[("NO_COLOR", "1")]),
        false
    ));
    assert!(!crate::use_color(
        ColorChoice::Never,
        vars(&[("FORCE_COLOR", "1")]),
        true
    ));
    assert!(!crate::use_color(
        ColorChoice::Auto,
        vars(&[("NO_COLOR", "1"), ("FORCE_COLOR", "1")]),
        true
    ));
    assert!(crate::use_color(
        ColorChoice::Auto,
        vars(&[("NO_COLOR", ""), ("FORCE_COLOR", "1")]),
        false
    ));
    assert!(crate::use_color(ColorChoice::Auto, vars(&[]), true));
    assert!(!crate::use_color(
        ColorChoice::Auto,
        vars(&[("FORCE_COLOR", "")]),
        false
    ));
}

/// The resolved settings carry the colour decision (`--show-settings` prints it).
#[test]
fn resolved_settings_say_whether_stderr_gets_colours() {
    let setup = Setup::new().var(EnvVars::NO_COLOR, "1");
    let terminal = Options {
        stderr_is_terminal: true,
        ..Options::default()
    };
    assert!(!setup.resolve(&terminal).unwrap().color);
    let always = Options {
        color: ColorChoice::Always,
        ..Options::default()
    };
    assert!(setup.resolve(&always).unwrap().color);
    assert!(Setup::new().resolve(&terminal).unwrap().color);
}

/// The variables other tools define are read here with the rest, so no command reads the
/// environment: `SOURCE_DATE_EPOCH` as whole seconds (anything else, or empty, is unset and
/// each command keeps its fixed default), the Spark driver's Python, and the registry auth
/// files in podman's order, then Docker's. (Were read by the CLI's `pack` and `image`.)
#[test]
fn variables_of_other_tools_are_settings_too() {
    let setup = Setup::new();
    let home = setup.dir.path().to_path_buf();
    let settings = setup.resolve(&Options::default()).unwrap();
    assert_eq!(settings.source_date_epoch, None);
    assert_eq!(settings.spark_driver_python, None);
    assert_eq!(
        settings.registry_auth_files,
        [
            home.join(".config/containers/auth.json"),
            home.join(".docker/config.json")
        ]
    );
    let setup = setup
        .var(EnvVars::SOURCE_DATE_EPOCH, " 1700000000\n")
        .var(EnvVars::PYSPARK_DRIVER_PYTHON, "/opt/spark/python3")
        .var(EnvVars::REGISTRY_AUTH_FILE, "/a/auth.json")
        .var(EnvVars::XDG_RUNTIME_DIR, "/run/user/1")
        .var(EnvVars::DOCKER_CONFIG, "/d");
    let settings = setup.resolve(&Options::default()).unwrap();
    assert_eq!(settings.source_date_epoch, Some(1_700_000_000));
    assert_eq!(
        settings.spark_driver_python.as_deref(),
        Some("/opt/spark/python3")
    );
    assert_eq!(
        settings.registry_auth_files,
        [
            PathBuf::from("/a/auth.json"),
            PathBuf::from("/run/user/1/containers/auth.json"),
            home.join(".config/containers/auth.json"),
            PathBuf::from("/d/config.json"),
        ]
    );
    for unusable in ["yesterday", "", "-1"] {
        let setup = Setup::new()
            .var(EnvVars::SOURCE_DATE_EPOCH, unusable)
            .var(EnvVars::REGISTRY_AUTH_FILE, "");
        let settings = setup.resolve(&Options::default()).unwrap();
        assert_eq!(settings.source_date_epoch, None, "{unusable:?}");
        // An empty variable is unset, as podman reads it: no auth file named "".
        assert!(!settings.registry_auth_files.contains(&PathBuf::new()));
    }
}
