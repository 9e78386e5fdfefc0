//! The fuzz targets' checks over their committed corpus (tests/fuzz/corpus), on stable
//! Rust: every input a fuzzer found worth keeping stays handled. Fuzzing itself needs
//! nightly and cargo-fuzz (README).

#[allow(dead_code)]
#[path = "fuzz/checks.rs"]
mod checks;

#[test]
fn the_committed_fuzz_corpus_still_passes() {
    for (target, check) in checks::TARGETS {
        let dir = format!("{}/tests/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
        let inputs: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(!inputs.is_empty(), "{dir} is empty");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                panic!("{}: {e:?}", input.display());
            }
        }
    }
}
