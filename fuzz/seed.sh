#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with the real model files of the conformance corpus
# (tests/corpus/cases/*/) and the fixture models (fixtures/models/*/). libFuzzer adds the inputs
# it finds to the same directories; they are not committed (see .gitignore).
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz")"
cd "$fuzz"
mkdir -p corpus/{yaml,mlmodel,conda,python_env,requirements,model}
for dir in "$root"/tests/corpus/cases/*/ "$root"/fixtures/models/*/; do
    case="$(basename "$(dirname "$dir")")-$(basename "$dir")"
    for file in MLmodel conda.yaml python_env.yaml; do
        [ -f "$dir/$file" ] && cp "$dir/$file" "corpus/yaml/$case-$file"
    done
    [ -f "$dir/MLmodel" ] && cp "$dir/MLmodel" "corpus/mlmodel/$case"
    [ -f "$dir/conda.yaml" ] && cp "$dir/conda.yaml" "corpus/conda/$case"
    [ -f "$dir/python_env.yaml" ] && cp "$dir/python_env.yaml" "corpus/python_env/$case"
    for file in requirements.txt constraints.txt; do
        [ -f "$dir/$file" ] && cp "$dir/$file" "corpus/requirements/$case-$file"
    done
    # model: MLmodel NUL conda.yaml NUL python_env.yaml NUL requirements.txt, stopping at the
    # first missing file after MLmodel (later files are then absent too).
    {
        first=1
        for file in MLmodel conda.yaml python_env.yaml requirements.txt; do
            [ -f "$dir/$file" ] || break
            [ "$first" = 1 ] || printf '\0'
            cat "$dir/$file"
            first=0
        done
    } > "corpus/model/$case"
done
for target in yaml mlmodel conda python_env requirements model; do
    echo "$target: $(ls "corpus/$target" | wc -l) seeds"
done
