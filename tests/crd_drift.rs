//! The committed CRD YAML under crds/ must be exactly what the Rust types generate.
//! Regenerate with `cargo run -- crd --out-dir crds`.

#[test]
fn committed_crds_match_the_rust_types() {
    let manifests = cost_analysis_operator::crd::manifests().expect("CRDs render");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for (file, generated) in manifests {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "crds/{file} is out of date: run `cargo run -- crd --out-dir crds`"
        );
    }
}
