//! The operator crate's module graph, by the engine's rule (see
//! `crates/spaceone-query/tests/graph/mod.rs`: a parent's calls into its children count, `mod`
//! and `pub use` do not): no import cycle between modules and no module over 600 lines.
//!   cargo test --test module_graph -- --nocapture   (prints the graph)

#[path = "../crates/spaceone-query/tests/graph/mod.rs"]
mod graph;

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycle_between_modules() {
    let edges = graph::graph(&src());
    for (m, to) in &edges {
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        eprintln!("{m} -> {}", to.join(", "));
    }
    assert!(
        edges.contains_key("api::grpc::convert"),
        "the graph reads src/api/grpc/"
    );
    assert!(
        edges
            .get("controller")
            .is_some_and(|t| t.contains("lifecycle")),
        "the graph sees use statements"
    );
    if let Some(c) = graph::cycle(&edges) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

/// Unit tests kept in files of their own (`*_tests.rs`) may have 1,000 lines, like the test and
/// bench files.
const MAX_TEST_LINES: usize = 1000;

#[test]
fn no_module_over_600_lines_and_no_test_file_over_1000() {
    let mut over: Vec<String> = graph::sources(&src())
        .into_iter()
        .map(|(m, text)| (m, text.lines().count()))
        .filter(|(m, n)| {
            let test = m.ends_with("_tests") || m.ends_with("::tests");
            *n > if test {
                MAX_TEST_LINES
            } else {
                graph::MAX_LINES
            }
        })
        .map(|(m, n)| format!("src module {m}: {n}"))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["tests", "benches"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let n = std::fs::read_to_string(&path).unwrap().lines().count();
                if n > MAX_TEST_LINES {
                    over.push(format!("{}: {n}", path.display()));
                }
            }
        }
    }
    assert!(over.is_empty(), "too long: {over:?}");
}
