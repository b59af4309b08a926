//! rattler solves and installs from the test channel over `file://` and over HTTP, and the
//! installed environment works: python runs, numpy imports, entry points run.

use std::path::Path;
use std::process::Command;

use env_test::test_channel;
use rattler::install::Installer;
use rattler::package_cache::PackageCache;
use rattler_conda_types::{Channel, MatchSpec, ParseStrictness, RepoDataRecord, Subdir};
use rattler_repodata_gateway::Gateway;
use rattler_solve::{SolverImpl, SolverTask};
use rattler_virtual_packages::{VirtualPackageOverrides, VirtualPackages};

const SPECS: [&str; 4] = ["python=3.11", "pip", "numpy", "tinypkg"];

async fn solve(
    channel: Channel,
    cache_dir: &Path,
    specs: &[&str],
) -> anyhow::Result<Vec<RepoDataRecord>> {
    let specs: Vec<MatchSpec> = specs
        .iter()
        .map(|spec| MatchSpec::from_str(spec, ParseStrictness::Lenient))
        .collect::<Result<_, _>>()?;
    let subdir = Subdir::current().unwrap();
    let repodata = Gateway::builder()
        .with_cache_dir(cache_dir.join("repodata"))
        .finish()
        .query(vec![channel], vec![subdir, Subdir::NoArch], specs.clone())
        .recursive(true)
        .execute()
        .await?;
    let virtual_packages = VirtualPackages::detect(&VirtualPackageOverrides::default(), None)?
        .into_generic_virtual_packages()
        .collect();
    let task = SolverTask {
        specs,
        virtual_packages,
        ..repodata.iter().collect::<SolverTask<_>>()
    };
    Ok(rattler_solve::resolvo::Solver.solve(task)?.records)
}

async fn install(records: Vec<RepoDataRecord>, prefix: &Path, cache_dir: &Path, specs: &[&str]) {
    let specs = specs
        .iter()
        .map(|spec| MatchSpec::from_str(spec, ParseStrictness::Lenient).unwrap())
        .collect();
    Installer::new()
        .with_package_cache(PackageCache::new(cache_dir.join("pkgs")))
        .with_target_platform(Subdir::current().unwrap())
        .with_requested_specs(specs)
        .install(prefix, records)
        .await
        .unwrap();
}

fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .current_dir("/")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "`{}` failed: {stdout}{}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Solves [`SPECS`] from `channel`, installs into a fresh prefix under `temp` and checks the
/// result.
async fn solve_install_check(channel: Channel, temp: &Path, expected_url_prefix: &str) {
    let cache_dir = temp.join("cache");
    let records = solve(channel, &cache_dir, &SPECS).await.unwrap();
    let mut solved: Vec<String> = records
        .iter()
        .map(|record| {
            assert!(
                record.url.as_str().starts_with(expected_url_prefix),
                "{} does not come from {expected_url_prefix}",
                record.url
            );
            format!(
                "{} {} {}",
                record.package_record.name.as_normalized(),
                record.package_record.version,
                record.package_record.build
            )
        })
        .collect();
    solved.sort();
    assert_eq!(
        solved,
        [
            "numpy 1.26.4 py311_0",
            "pip 25.0.1 py_0",
            "python 3.11.7 0_pyenv_cpython",
            "tinydep 0.1.1 py_0",
            "tinypkg 1.2.0 py_0",
        ]
    );

    // rattler uses a relative prefix verbatim in shebangs and sysconfig: always pass it absolute.
    let prefix = fs_err::canonicalize(temp).unwrap().join("env");
    install(records, &prefix, &cache_dir, &SPECS).await;

    let python = prefix.join("bin/python");
    let stdout = run(
        &python,
        &[
            "-c",
            "import sys, sysconfig, numpy, tinypkg, tinydep; \
             print(numpy.__version__); print(tinydep.__version__); print(sys.prefix); \
             print(sysconfig.get_config_var('prefix')); \
             print(round(numpy.linalg.det(numpy.eye(3) * 2)))",
        ],
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "1.26.4");
    assert_eq!(lines[1], "0.1.1");
    assert_eq!(Path::new(lines[2]), prefix);
    // `_sysconfigdata` had the pyenv prefix replaced (text-mode prefix placeholder).
    assert_eq!(Path::new(lines[3]), prefix);
    assert_eq!(lines[4], "8");

    assert_eq!(
        run(&prefix.join("bin/tinypkg-hello"), &[]),
        "tinypkg 1.2.0 says 42\n"
    );
    let pip = run(&prefix.join("bin/pip"), &["--version"]);
    assert!(pip.starts_with("pip 25.0.1 from "), "{pip}");
    // numpy's own script, with the placeholder in its shebang replaced.
    let f2py = fs_err::read_to_string(prefix.join("bin/f2py")).unwrap();
    assert!(
        f2py.starts_with(&format!("#!{}/bin/python3.11\n", prefix.display())),
        "{f2py}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_from_file_channel() {
    let channel = test_channel().unwrap();
    let temp = tempfile::tempdir().unwrap();
    solve_install_check(
        Channel::from_url(channel.file_url()),
        temp.path(),
        channel.file_url().as_str(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_from_http_channel() {
    let channel = test_channel().unwrap();
    let server = channel.serve().unwrap();
    let temp = tempfile::tempdir().unwrap();
    solve_install_check(
        Channel::from_url(server.url()),
        temp.path(),
        server.url().as_str(),
    )
    .await;

    let requests = server.requests();
    for path in [
        "/linux-64/repodata.json",
        "/noarch/repodata.json",
        "/linux-64/python-3.11.7-0_pyenv_cpython.conda",
        "/noarch/tinypkg-1.2.0-py_0.conda",
    ] {
        assert!(
            requests
                .iter()
                .any(|request| request.path == path && request.status == 200),
            "{path} was not served: {requests:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinypkg_2_is_unsatisfiable() {
    let channel = test_channel().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let error = solve(
        Channel::from_url(channel.file_url()),
        temp.path(),
        &["python=3.11", "tinypkg=2"],
    )
    .await
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("tinydep"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_bz2_tinydep_installs() {
    let channel = test_channel().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let cache_dir = temp.path().join("cache");
    let records = solve(
        Channel::from_url(channel.file_url()),
        &cache_dir,
        &["python=3.12", "tinydep=0.1.0"],
    )
    .await
    .unwrap();
    let tinydep = records
        .iter()
        .find(|record| record.package_record.name.as_normalized() == "tinydep")
        .unwrap();
    assert!(tinydep.url.as_str().ends_with("tinydep-0.1.0-py_0.tar.bz2"));
    let prefix = fs_err::canonicalize(temp.path()).unwrap().join("env");
    install(
        records,
        &prefix,
        &cache_dir,
        &["python=3.12", "tinydep=0.1.0"],
    )
    .await;
    let stdout = run(
        &prefix.join("bin/python"),
        &[
            "-c",
            "import tinydep, sys; print(tinydep.__version__, sys.version_info[:2])",
        ],
    );
    assert_eq!(stdout, "0.1.0 (3, 12)\n");
}
