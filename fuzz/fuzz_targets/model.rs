//! A whole model directory: the input is split at NUL bytes into `MLmodel`, `conda.yaml`,
//! `python_env.yaml` and `requirements.txt` (a file is absent when the input has fewer parts),
//! and `ModelDir` computes the spec and its key for both env managers, as `pyfunc-env create`
//! does.
#![no_main]

use env_spec::{EnvManager, KeyContext, ModelDir};
use env_spec_fuzz::{check, render_warnings, scratch_dir};
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 4] = [
    "MLmodel",
    "conda.yaml",
    "python_env.yaml",
    "requirements.txt",
];

fuzz_target!(|data: &[u8]| {
    let root = scratch_dir();
    let mut parts = data.split(|&b| b == 0);
    for name in FILES {
        let path = root.join(name);
        match parts.next() {
            Some(part) => fs_err::write(&path, part).unwrap(),
            None => match fs_err::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("{err}"),
            },
        }
    }
    let model = ModelDir::open(root).unwrap();
    std::hint::black_box(model.default_env_manager());
    check(&model.pip_dependencies());
    check(&model.conda_dependencies());
    let env = model.virtualenv_env();
    check(&env);
    if let Ok(env) = &env {
        render_warnings(&env.warnings);
    }
    for manager in [EnvManager::Conda, EnvManager::Virtualenv] {
        let spec = model.spec(manager);
        check(&spec);
        if let Ok(spec) = spec {
            render_warnings(&spec.warnings);
            std::hint::black_box(spec.spec.key(&KeyContext::for_platform("linux-64")));
        }
    }
});
