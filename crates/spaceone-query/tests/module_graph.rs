//! The engine's module graph (see `graph/mod.rs` for what counts as an edge): no import cycle
//! between modules and no module over 600 lines.
//!   cargo test -p spaceone-query --test module_graph -- --nocapture   (prints the graph)

mod graph;

use std::collections::{BTreeMap, BTreeSet};
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
    assert!(edges.contains_key("stat::eval"), "the graph reads stat/");
    assert!(
        edges.get("scan").is_some_and(|t| t.contains("plan")),
        "the graph sees use statements"
    );
    if let Some(c) = graph::cycle(&edges) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    edges.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(graph::cycle(&edges).map(|c| c.len()), Some(4));
    edges.insert("c".to_string(), BTreeSet::new());
    assert_eq!(graph::cycle(&edges), None);
}

#[test]
fn no_module_over_600_lines() {
    for (m, text) in graph::sources(&src()) {
        let n = text.lines().count();
        assert!(
            n <= graph::MAX_LINES,
            "module `{m}` has {n} lines (at most {})",
            graph::MAX_LINES
        );
    }
}
