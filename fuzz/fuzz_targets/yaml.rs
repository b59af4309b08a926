//! `yaml::load` (PyYAML's `safe_load`) and the two renderings of its result.
#![no_main]

use env_spec::yaml::{self, Node, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = env_spec_fuzz::text(data) else {
        return;
    };
    match yaml::load(text) {
        Ok(Some(node)) => visit(&node, text),
        Ok(None) => {}
        Err(error) => {
            std::hint::black_box(error.to_string());
            std::hint::black_box(text.get(error.span.start..error.span.end));
        }
    }
});

fn visit(node: &Node, text: &str) {
    std::hint::black_box(node.to_json());
    std::hint::black_box(node.python_repr());
    std::hint::black_box(node.python_str());
    std::hint::black_box((node.is_truthy(), node.type_name(), node.plain_text()));
    std::hint::black_box(text.get(node.span.start..node.span.end));
    match &node.value {
        Value::Seq(items) => {
            for item in items {
                visit(item, text);
            }
        }
        Value::Map(entries) => {
            for (key, value) in entries {
                visit(key, text);
                visit(value, text);
            }
        }
        _ => {}
    }
}
