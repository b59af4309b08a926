//! Whole outputs of every command's main paths, snapshotted with [`pyfunc_env_snapshot!`]:
//! a change to what users see shows up here as a diff to review.

use crate::common::{TestContext, mirror_args, pyfunc_env_snapshot};

#[test]
fn top_level_help() {
    let ctx = TestContext::new();
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().arg("--help"), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        Give any MLflow pyfunc model the Python environment it declares, and score it there

        Usage: pyfunc-env [OPTIONS] <COMMAND>

        Commands:
          deps         Print the model's dependencies, as `mlflow.pyfunc.get_model_dependencies` gives them
          inspect      Show what a model needs: flavors, Python, env files per env manager, dependencies,
                       key
          create       Build the model's environment in the cache, or reuse it if it is there
          run          Run `predict`, `serve` or any command inside the model's environment
          check        Compare the model's requirements with what an interpreter or environment has
                       installed
          lock         Write a lock file (pixi lock format) of exactly what the model's environment holds
          cache        Inspect and maintain the cache
          pack         Write the model's environment as an archive that runs wherever it is extracted (Spark
                       `--archives`, containers, other machines)
          unpack       Extract an archive written by `pack` into a new directory and check that its Python
                       runs there
          image        Write an OCI image that serves the model with MLflow's scoring server: the base
                       image, the environment as one layer (cached by key), the model as another. No Docker
                       daemon
          completions  Print a shell completion script for bash, zsh, fish, elvish or PowerShell
          help         Print this message or the help of the given subcommand(s)

        Options:
          -v, --verbose...
                  Use more output: `-v` shows why (cache hits, lock waits), `-vv` everything

          -q, --quiet...
                  Use less output: `-q` hides progress and information, `-qq` hides warnings too

              --color <WHEN>
                  When to use colours

                  Possible values:
                  - auto:   Colour when stderr is a terminal and `NO_COLOR` is not set
                  - always: Always
                  - never:  Never

                  [default: auto]

              --no-progress
                  Hide progress bars [env: PYFUNC_ENV_NO_PROGRESS=]

              --offline
                  Never access the network; use only what is cached [env: PYFUNC_ENV_OFFLINE=]

              --cache-dir <CACHE_DIR>
                  Path to the cache directory [env: PYFUNC_ENV_CACHE_DIR=]

              --config-file <CONFIG_FILE>
                  Path to a configuration file (default: `$XDG_CONFIG_HOME/pyfunc-env/config.toml`) [env:
                  PYFUNC_ENV_CONFIG_FILE=]

          -h, --help
                  Print help (see a summary with '-h')

          -V, --version
                  Print version

        Examples:
          pyfunc-env deps model/ --format pip     # what mlflow.pyfunc.get_model_dependencies gives
          pyfunc-env inspect model/               # what the model needs, and from which files
          pyfunc-env run models:/fraud@champion -- predict -i input.json

        Model URIs (any MODEL argument): a directory, file://, models:/NAME/VERSION, models:/NAME@ALIAS,
          models:/NAME/latest, models:/NAME/STAGE, runs:/RUN_ID/PATH, mlflow-artifacts:/PATH,
          s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH,
          abfss://FILESYSTEM@ACCOUNT.dfs.core.windows.net/PATH

        Model URI settings:
          MLFLOW_TRACKING_URI                  the MLflow tracking server, http(s)://HOST:PORT[/PREFIX]
          MLFLOW_REGISTRY_URI                  the model registry, if not the tracking server
          MLFLOW_TRACKING_TOKEN                bearer token
          MLFLOW_TRACKING_USERNAME             basic-auth user
          MLFLOW_TRACKING_PASSWORD             basic-auth password
          MLFLOW_TRACKING_INSECURE_TLS         `true`: do not verify the server's certificate
          MLFLOW_TRACKING_SERVER_CERT_PATH     CA bundle (PEM) for the server
          MLFLOW_TRACKING_CLIENT_CERT_PATH     client certificate and key (PEM)
          MLFLOW_HTTP_REQUEST_MAX_RETRIES      retries on errors, 429 and 5xx (7)
          MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR   backoff factor in s (2)
          MLFLOW_HTTP_REQUEST_TIMEOUT          request timeout in s (120)
          MLFLOW_S3_ENDPOINT_URL               S3-compatible endpoint (wins over AWS_ENDPOINT_URL)
          AWS_ACCESS_KEY_ID                    S3 access key (else the profile's)
          AWS_SECRET_ACCESS_KEY                S3 secret key (else the profile's)
          AWS_SESSION_TOKEN                    S3 session token
          AWS_REGION                           S3 region (else the profile's, else us-east-1)
          AWS_ENDPOINT_URL                     S3-compatible endpoint (else the profile's endpoint_url)
          AWS_PROFILE                          profile in ~/.aws/credentials and ~/.aws/config (default)
          AWS_SHARED_CREDENTIALS_FILE          credentials file (~/.aws/credentials)
          AWS_CONFIG_FILE                      config file (~/.aws/config)
          GOOGLE_APPLICATION_CREDENTIALS       gs:// key file (else gcloud's, the VM's, or anonymous)
          STORAGE_EMULATOR_HOST                gs:// emulator HOST:PORT (no credentials sent)
          MLFLOW_GCS_DEFAULT_TIMEOUT           gs:// request timeout in s (-1: none)
          AZURE_STORAGE_CONNECTION_STRING      wasbs://, abfss:// connection string (wins)
          AZURE_STORAGE_ACCESS_KEY             account key (else AZURE_CLIENT_ID/SECRET/TENANT_ID, ...)

        ----- stderr -----
    "#);
}

#[test]
fn deps_inspect_and_check_of_a_fixture_model() {
    let ctx = TestContext::new();
    let model = ctx.copy_fixture("sklearn-iris");
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().arg("deps").arg(&model), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        mlflow==3.17.2
        numpy==2.4.6
        pandas==3.1.1
        scikit-learn==1.9.1
        scipy==1.17.1
        skops==0.16.0
        ----- stderr -----
    "#);
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().arg("deps").arg(&model).args(["--format", "json"]),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----
        {
          "schema_version": 1,
          "model_dir": "[TEMP_DIR]/models/sklearn-iris",
          "env_manager": "virtualenv",
          "key": "[KEY]",
          "key_context": {
            "platform": "linux-64",
            "virtual_packages": [
              "__glibc=[VERSION]"
            ],
            "python_source": "auto",
            "uv": "0.13.9",
            "compile_bytecode": true,
            "layout": 1
          },
          "files": [
            "MLmodel",
            "python_env.yaml",
            "requirements.txt"
          ],
          "spec": {
            "env_manager": "virtualenv",
            "python": "3.11.7",
            "build": {
              "requirements": [
                {
                  "target": {
                    "named": "pip==26.3"
                  }
                },
                {
                  "target": {
                    "named": "setuptools==84.2.1"
                  }
                },
                {
                  "target": {
                    "named": "wheel==0.48.0"
                  }
                }
              ]
            },
            "pip": {
              "requirements": [
                {
                  "target": {
                    "named": "mlflow==3.17.2"
                  }
                },
                {
                  "target": {
                    "named": "numpy==2.4.6"
                  }
                },
                {
                  "target": {
                    "named": "pandas==3.1.1"
                  }
                },
                {
                  "target": {
                    "named": "scikit-learn==1.9.1"
                  }
                },
                {
                  "target": {
                    "named": "scipy==1.17.1"
                  }
                },
                {
                  "target": {
                    "named": "skops==0.16.0"
                  }
                }
              ]
            }
          },
          "warnings": []
        }

        ----- stderr -----
    "#
    );
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().arg("inspect").arg(&model), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        Model: [TEMP_DIR]/models/sklearn-iris
          MLflow version: 3.17.2
          Flavors: python_function, sklearn
          Loader module: mlflow.sklearn
          Python version (MLmodel): 3.11.7
          Signature inputs: sepal_length (double), sepal_width (double), petal_length (double), petal_width (double)
          Signature outputs: tensor int64 [-1]
        Environment files:
          virtualenv / uv: python_env.yaml
          conda: conda.yaml
          Default env manager: virtualenv
        virtualenv environment (default)  key [KEY]
            from: MLmodel, python_env.yaml, requirements.txt
            python: 3.11.7
            build:
              pip==26.3
              setuptools==84.2.1
              wheel==0.48.0
            pip:
              mlflow==3.17.2
              numpy==2.4.6
              pandas==3.1.1
              scikit-learn==1.9.1
              scipy==1.17.1
              skops==0.16.0
        conda environment  key [KEY]
            from: MLmodel, conda.yaml
            channels: conda-forge
            conda:
              python 3.11.7.*
              pip <=26.3
            pip:
              mlflow==3.17.2
              numpy==2.4.6
              pandas==3.1.1
              scikit-learn==1.9.1
              scipy==1.17.1
              skops==0.16.0

        ----- stderr -----
    "#);
    // A bare CPython: every requirement is missing, whatever this machine has installed.
    let python = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/bin/python3.11");
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().arg("check").arg(&model).arg("--python").arg(&python),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----
        Interpreter: [PYENV_ROOT]/versions/3.11.7/bin/python3.11 (Python 3.11.7)
        Model Python: 3.11.7
        PACKAGE       INSTALLED       REQUIRED
        mlflow        uninstalled     mlflow==3.17.2
        numpy         uninstalled     numpy==2.4.6
        pandas        uninstalled     pandas==3.1.1
        scikit-learn  uninstalled     scikit-learn==1.9.1
        scipy         uninstalled     scipy==1.17.1
        skops         uninstalled     skops==0.16.0
        6 of 6 requirement(s) not satisfied

        ----- stderr -----
    "#
    );
}

#[test]
fn create_cache_lock_and_pack_of_a_conda_model() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- tinypkg\n",
        )],
    );
    let mirrors = mirror_args(channel.file_url().as_str());
    let command = |words: &[&str]| {
        let mut command = ctx.command();
        command.args(words);
        command
    };
    pyfunc_env_snapshot!(
        ctx.filters(),
        command(&["create"]).arg(&model).args(&mirrors),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----
        [CACHE_DIR]/envs-v1/[KEY]

        ----- stderr -----
        Created conda environment in [TIME]: [CACHE_DIR]/envs-v1/[KEY]
    "#
    );
    pyfunc_env_snapshot!(
        ctx.filters(),
        command(&["create", "--json"]).arg(&model).args(&mirrors),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----
        {
          "model_dir": "[TEMP_DIR]/models/m",
          "env_manager": "conda",
          "key": "[KEY]",
          "prefix": "[CACHE_DIR]/envs-v1/[KEY]",
          "python": "[CACHE_DIR]/envs-v1/[KEY]/bin/python",
          "cache_hit": true,
          "built_by_other": false,
          "remote_hit": false,
          "pushed": false,
          "timings": {
            "wait": "[TIME]",
            "solve": "[TIME]",
            "conda_install": "[TIME]",
            "pip_install": "[TIME]",
            "compile": "[TIME]",
            "remote": 0.0,
            "total": "[TIME]"
          },
          "warnings": [],
          "bytecode_deferred": false,
          "bytecode": null
        }

        ----- stderr -----
        Using cached environment: [CACHE_DIR]/envs-v1/[KEY]
    "#
    );
    pyfunc_env_snapshot!(ctx.filters(), command(&["cache", "list"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        KEY                               STATE       MANAGER          SIZE  CREATED              LAST USED            MODEL
        [KEY]  complete    conda        [SIZE]  [DATE]  [DATE]  [TEMP_DIR]/models/m

        ----- stderr -----
    "#);
    pyfunc_env_snapshot!(ctx.filters(), command(&["cache", "dir"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        [CACHE_DIR]

        ----- stderr -----
    "#);
    pyfunc_env_snapshot!(
        ctx.filters(),
        command(&["lock"]).arg(&model).args(&mirrors),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----
        # pyfunc-env lock: key=[KEY] env-manager=conda
        version: 7
        platforms:
        - name: linux-64
        environments:
          default:
            channels:
            - url: conda-forge
            packages:
              linux-64:
              - conda: [REPO]/target/env-test/channel-[ID]/linux-64/python-3.11.7-0_pyenv_cpython.conda
              - conda: [REPO]/target/env-test/channel-[ID]/noarch/tinydep-0.1.1-py_0.conda
              - conda: [REPO]/target/env-test/channel-[ID]/noarch/tinypkg-1.2.0-py_0.conda
        packages:
        - conda: [REPO]/target/env-test/channel-[ID]/linux-64/python-3.11.7-0_pyenv_cpython.conda
          subdir: linux-64
          sha256: [HASH]
          md5: [HASH]
          depends:
          - __glibc >=2.17
          channel: file://[REPO]/target/env-test/channel-[ID]
          license: Python-2.0
          size: [N]
          timestamp: 1704067200000
          indexed_timestamp: [N]
        - conda: [REPO]/target/env-test/channel-[ID]/noarch/tinydep-0.1.1-py_0.conda
          subdir: noarch
          sha256: [HASH]
          md5: [HASH]
          depends:
          - python >=3.8
          channel: file://[REPO]/target/env-test/channel-[ID]
          license: MIT
          size: [N]
          timestamp: 1704067200000
          indexed_timestamp: [N]
        - conda: [REPO]/target/env-test/channel-[ID]/noarch/tinypkg-1.2.0-py_0.conda
          subdir: noarch
          sha256: [HASH]
          md5: [HASH]
          depends:
          - python >=3.8
          - tinydep >=0.1
          channel: file://[REPO]/target/env-test/channel-[ID]
          license: MIT
          size: [N]
          timestamp: 1704067200000
          indexed_timestamp: [N]

        ----- stderr -----
    "#
    );
    let archive = ctx.path().join("env.tar.gz");
    pyfunc_env_snapshot!(
        ctx.filters(),
        command(&["pack"]).arg(&model).args(&mirrors).arg("-o").arg(&archive),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Packing [CACHE_DIR]/envs-v1/[KEY] into [TEMP_DIR]/env.tar.gz
        Packed Python 3.11.7 into [TEMP_DIR]/env.tar.gz (tar.gz, [SIZE]; [N] files, [SIZE] unpacked) in [TIME]
        Left out: headers, static libraries, docs [SIZE], IDLE, tkinter, ensurepip [SIZE], timestamp bytecode (replaced) [SIZE]
    "#
    );
}

#[test]
fn run_errors() {
    let ctx = TestContext::new();
    let missing = ctx.path().join("no-model");
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command()
            .arg("run")
            .arg(&missing)
            .args(["--", "predict", "-i", "nosuch.json"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Input file `nosuch.json` does not exist, and the model at `[TEMP_DIR]/no-model` cannot be read: Model directory `[TEMP_DIR]/no-model` does not exist
    "#
    );
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().arg("run").arg(&missing).args(["--", "predict", "--nosuch"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: unexpected argument '--nosuch' found

            Usage: predict [OPTIONS]

            For more information, try '--help'.
    "#
    );
    let model = ctx.copy_fixture("sklearn-iris");
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command()
            .arg("run")
            .arg(&model)
            .args(["--python", "/usr/bin/python3", "--", "python", "-V"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: `--python` applies to `--env-manager local`; environments bring their own Python
    "#
    );
}
