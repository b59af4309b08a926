//! `python_env::parse` (`_PythonEnv.from_yaml`).
#![no_main]

use env_spec::python_env;
use env_spec_fuzz::{check, render_warnings, source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = env_spec_fuzz::text(data) else {
        return;
    };
    let parsed = python_env::parse(&source("python_env.yaml", text));
    check(&parsed);
    if let Ok((env, warnings)) = parsed {
        render_warnings(&warnings);
        std::hint::black_box(env.to_json("3.11.7"));
    }
});
