//! `MlModel::parse` and what the env managers ask of it.
#![no_main]

use env_spec::MlModel;
use env_spec_fuzz::{check, render_warnings, source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = env_spec_fuzz::text(data) else {
        return;
    };
    let model = MlModel::parse(source("MLmodel", text));
    check(&model);
    let Ok(model) = model else {
        return;
    };
    render_warnings(&model.warnings);
    check(&model.env_file_names());
    check(&model.conda_file_name());
    check(&model.pyfunc());
    std::hint::black_box(model.signature());
    std::hint::black_box((
        model.mlflow_version(),
        model.python_version(),
        model.loader_module(),
    ));
});
