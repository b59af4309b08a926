//! `requirements.txt` through MLflow's line parsing (`requirements::parse_file`, following
//! `-r`/`-c` into files of a fixed model directory) and pip's interpretation
//! (`requirements::interpret`), both as a requirements and as a constraints file.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use env_spec::ModelDir;
use env_spec::requirements::{self, Sources};
use env_spec_fuzz::{check, scratch_dir};
use libfuzzer_sys::fuzz_target;

/// Files the input may include or point at.
const FILES: &[(&str, &str)] = &[
    (
        "MLmodel",
        "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n",
    ),
    (
        "other.txt",
        "-r nested/inner.txt\nscikit-learn==1.3.2 # pinned\n--extra-index-url https://example.org/simple\n",
    ),
    (
        "nested/inner.txt",
        "-c ../constraints.txt\nnumpy>=1.24 ; python_version >= \"3.9\"\n-e ../pkg\n",
    ),
    ("constraints.txt", "numpy<2\n-r requirements.txt\n"),
    ("loop.txt", "-r loop.txt\n"),
    ("code/dep-1.0-py3-none-any.whl", "not really a wheel"),
    (
        "pkg/setup.py",
        "from setuptools import setup\nsetup(name='pkg')\n",
    ),
    ("pkg/pkg/__init__.py", ""),
];

fn model() -> &'static ModelDir {
    static MODEL: OnceLock<ModelDir> = OnceLock::new();
    MODEL.get_or_init(|| {
        let root = scratch_dir();
        for (name, text) in FILES {
            let path = root.join(name);
            fs_err::create_dir_all(path.parent().unwrap_or(Path::new("."))).unwrap();
            fs_err::write(path, text).unwrap();
        }
        ModelDir::open(root).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let model = model();
    // Write the input as the model's file so `-r requirements.txt` loops and relative paths see
    // it exactly as `ModelDir` does (non-UTF-8 input checks the `NotUtf8` path).
    fs_err::write(model.root().join("requirements.txt"), data).unwrap();
    let Some(read) = model.requirements_file("requirements.txt") else {
        panic!("requirements.txt was just written");
    };
    check(&read);
    let Ok(file) = model.fs().read("requirements.txt", None, "") else {
        return;
    };
    for is_constraint in [false, true] {
        let mut sources = Sources::default();
        let lines = requirements::parse_file(model.fs(), &mut sources, &file, is_constraint);
        check(&lines);
        let Ok(lines) = lines else {
            continue;
        };
        let set = requirements::interpret(model.fs(), &mut sources, &lines);
        check(&set);
        if let Ok(set) = set {
            for requirement in set.requirements.iter().chain(&set.constraints) {
                std::hint::black_box(requirement.to_requirement_line(model.root()));
                std::hint::black_box(requirement.name());
            }
        }
    }
});
