//! `CondaFile::parse` read the three ways MLflow reads a `conda.yaml`.
#![no_main]

use env_spec::conda::CondaFile;
use env_spec_fuzz::{check, render_warnings, source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = env_spec_fuzz::text(data) else {
        return;
    };
    let conda = CondaFile::parse(source("conda.yaml", text));
    check(&conda);
    let Ok(conda) = conda else {
        return;
    };
    let python_env = conda.to_python_env();
    check(&python_env);
    if let Ok((_, warnings)) = &python_env {
        render_warnings(warnings);
    }
    let pip = conda.pip_section();
    check(&pip);
    if let Ok((_, _, warnings)) = &pip {
        render_warnings(warnings);
    }
    let env = conda.conda_env();
    check(&env);
    if let Ok(env) = env {
        for (_, spec) in &env.specs {
            std::hint::black_box(spec.to_string());
        }
    }
});
