//! The environment-key specification (`docs/concepts/env-key.md`) and the code agree.
//!
//! Every test vector on that page is recomputed here: its files are written into an empty
//! directory, read with [`ModelDir`], and the canonical document and key must equal the page's.
//! Run with `PYFUNC_ENV_UPDATE_DOCS=1` to write the computed values into the page (then review
//! the diff: a changed vector means every existing environment gets a new key).

use std::path::{Path, PathBuf};

use env_spec::{EnvKey, EnvManager, KeyContext, ModelDir};

fn spec_page() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/concepts/env-key.md")
}

/// One fenced block: its info string (`text file=MLmodel`, `json canonical`) and body.
struct Fence {
    info: String,
    body: String,
    /// Byte range of the body in the page.
    range: std::ops::Range<usize>,
}

fn fences(page: &str) -> Vec<Fence> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut open: Option<(String, usize)> = None;
    for line in page.split_inclusive('\n') {
        let trimmed = line.trim_end_matches('\n');
        if let Some(rest) = trimmed.strip_prefix("```") {
            match open.take() {
                None => open = Some((rest.to_string(), offset + line.len())),
                Some((info, start)) => out.push(Fence {
                    info,
                    body: page[start..offset].trim_end_matches('\n').to_string(),
                    range: start..offset,
                }),
            }
        }
        offset += line.len();
    }
    out
}

fn context_from(json: &str) -> KeyContext {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let text = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let mut context = KeyContext::for_platform(&text("platform").unwrap());
    context.virtual_packages = value["virtual_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    context.python_source = text("python_source");
    context.exclude_newer = text("exclude_newer");
    context.uv = text("uv");
    context.compile_bytecode = value["compile_bytecode"].as_bool().unwrap();
    context.layout = u32::try_from(value["layout"].as_u64().unwrap()).unwrap();
    // The context must round-trip: a member the page gives that the code does not know (or
    // the reverse) is a drift between the two.
    assert_eq!(
        serde_json::to_value(&context).unwrap(),
        value,
        "the page's context has members the code does not serialise the same way"
    );
    context
}

/// The computed (canonical, key) of a vector section, or the locked key of vector 4.
fn compute(section: &[Fence]) -> Vec<(usize, String)> {
    let find = |info: &str| section.iter().find(|f| f.info == info);
    if let Some(locked) = find("text locked") {
        let key = EnvKey::parse("0123456789abcdef0123456789abcdef").unwrap();
        let value = key.with_lock("version: 6\n").to_string();
        return vec![(locked.range.start, value)];
    }
    let dir = tempfile::tempdir().unwrap();
    for fence in section {
        if let Some(name) = fence.info.strip_prefix("text file=") {
            fs_err::write(dir.path().join(name), format!("{}\n", fence.body)).unwrap();
        }
    }
    let manager = match find("json manager").unwrap().body.as_str() {
        "\"virtualenv\"" => EnvManager::Virtualenv,
        "\"conda\"" => EnvManager::Conda,
        "\"uv\"" => EnvManager::Uv,
        other => panic!("unknown manager {other}"),
    };
    let context = context_from(&find("json context").unwrap().body);
    let model = ModelDir::open(dir.path()).unwrap();
    let spec = model.spec(manager).unwrap().spec;
    let canonical = spec.canonical_json(&context);
    // The key is exactly the documented hash of the canonical text.
    assert_eq!(
        spec.key(&context).as_str(),
        &env_spec::spec::sha256_hex(canonical.as_bytes())[..32]
    );
    vec![
        (find("json canonical").unwrap().range.start, canonical),
        (
            find("text key").unwrap().range.start,
            spec.key(&context).to_string(),
        ),
    ]
}

#[test]
fn the_specification_page_and_the_code_agree() {
    let path = spec_page();
    let page = fs_err::read_to_string(&path).unwrap();
    let all = fences(&page);
    let mut computed: Vec<(usize, String)> = Vec::new();
    let mut sections = 0;
    for (index, heading) in page.match_indices("\n### Vector ") {
        let _ = heading;
        let end = page[index + 1..]
            .find("\n### ")
            .map_or(page.len(), |e| index + 1 + e);
        let section: Vec<Fence> = all
            .iter()
            .filter(|f| f.range.start > index && f.range.end <= end)
            .map(|f| Fence {
                info: f.info.clone(),
                body: f.body.clone(),
                range: f.range.clone(),
            })
            .collect();
        computed.extend(compute(&section));
        sections += 1;
    }
    assert_eq!(sections, 5, "the page should hold five vectors");

    if std::env::var_os("PYFUNC_ENV_UPDATE_DOCS").is_some() {
        let mut updated = page.clone();
        for (start, value) in computed.iter().rev() {
            let fence = all.iter().find(|f| f.range.start == *start).unwrap();
            updated.replace_range(fence.range.clone(), &format!("{value}\n"));
        }
        fs_err::write(&path, updated).unwrap();
        return;
    }
    for (start, value) in &computed {
        let fence = all.iter().find(|f| f.range.start == *start).unwrap();
        assert_eq!(
            &fence.body,
            value,
            "`{}` in {} differs from the code (run with PYFUNC_ENV_UPDATE_DOCS=1 and review)",
            fence.info,
            path.display()
        );
    }
}
