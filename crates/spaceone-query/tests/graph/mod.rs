//! A crate's module graph, read from its sources; shared by the module-graph tests of both
//! crates of the workspace (the engine's and the operator's). A module is a file:
//! `stat/eval.rs` is `stat::eval`, `stat/mod.rs` is `stat`. Edges are the `use crate::…`/
//! `use super::…`/`use self::…` statements, inline `crate::…`/`super::…` paths and a parent's
//! bare paths into its child modules (a parent's calls into its children count); `mod`
//! declarations and re-exports (`pub use`) do not. A path to an item the crate root re-exports
//! counts as an edge to the module that defines it. Code after the first `#[cfg(test)]` (unit
//! tests) is left out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub const MAX_LINES: usize = 600;

/// Module name (`""` for the crate root) -> its source file's text, for the crate whose sources
/// are under `root` (its `src/`).
pub fn sources(root: &Path) -> BTreeMap<String, String> {
    let root = root.to_path_buf();
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The code without comments and without the unit tests at the end.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The full paths a `use` tree names: `a::{b::C, d}` -> `a::b::C`, `a::d`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    match tree.find('{') {
        None => {
            let path = tree.split(" as ").next().unwrap_or(tree).trim();
            out.push(format!("{prefix}{path}"));
        }
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&format!("{prefix}{head}"), &inner[start..], out);
        }
    }
}

/// Every path in the code that starts at `crate`, `super`, `self` or (bare) at one of `children`.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements, over several lines when they have braces.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().next_back();
        let starts_statement = before.is_none_or(|c| c.is_whitespace() || c == ';' || c == '{');
        // A re-export (`pub use`, `pub(crate) use`) names a child for the parent's users: it is
        // no call of the parent's into the child.
        let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
        let reexport = rest[line_start..at].trim_start().starts_with("pub");
        let tail = &rest[at + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        if starts_statement && !reexport {
            expand("", &tail[..end], &mut out);
        }
        rest = &tail[end.min(tail.len())..];
    }
    // Inline paths.
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != b':') {
            let mut j = i;
            while j < bytes.len() && (ident(bytes[j]) || bytes[j] == b':') {
                j += 1;
            }
            let path = &code[i..j];
            let first = path.split("::").next().unwrap_or_default();
            // `super::{a, b}` is a use group, read by the `use` parser above: its prefix alone
            // names no item.
            if path.contains("::")
                && !path.ends_with("::")
                && (matches!(first, "crate" | "super" | "self") || children.contains(first))
            {
                out.push(path.trim_end_matches(':').to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn parent(m: &str) -> String {
    m.rsplit_once("::")
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

fn join(base: &str, seg: &str) -> String {
    if base.is_empty() {
        seg.to_string()
    } else {
        format!("{base}::{seg}")
    }
}

/// The module a path names (or names an item of), seen from module `m`.
fn resolve(
    m: &str,
    path: &str,
    modules: &BTreeMap<String, String>,
    reexports: &BTreeMap<String, String>,
) -> Option<String> {
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut base = match *segs.peek()? {
        "crate" => {
            segs.next();
            String::new()
        }
        "self" => {
            segs.next();
            m.to_string()
        }
        "super" => m.to_string(),
        _ => m.to_string(),
    };
    while segs.peek() == Some(&"super") {
        segs.next();
        base = parent(&base);
    }
    for seg in segs {
        let next = join(&base, seg);
        if modules.contains_key(&next) {
            base = next;
        } else {
            if base.is_empty() {
                return reexports.get(seg).cloned();
            }
            break;
        }
    }
    (!base.is_empty()).then_some(base)
}

/// Module -> the modules it imports.
pub fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = sources(root);
    let root = code(modules.get("").expect("src/lib.rs"));
    // Items the crate root re-exports: `pub use a::{X, Y}` -> X, Y defined in `a`.
    let mut reexports = BTreeMap::new();
    let mut uses = Vec::new();
    for stmt in root.split(';') {
        if let Some(tree) = stmt.trim().strip_prefix("pub use ") {
            expand("", tree, &mut uses);
        }
    }
    for path in uses {
        if let Some((module, item)) = path.rsplit_once("::") {
            reexports.insert(item.to_string(), module.to_string());
        }
    }
    let mut edges = BTreeMap::new();
    for (m, text) in &modules {
        if m.is_empty() {
            continue;
        }
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|k| parent(k) == *m && !k.is_empty())
            .map(|k| k.rsplit("::").next().unwrap_or_default().to_string())
            .collect();
        let mut to = BTreeSet::new();
        for path in paths(&code(text), &children) {
            if let Some(t) = resolve(m, &path, &modules, &reexports)
                && t != *m
            {
                to.insert(t);
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// A cycle in the graph, if there is one.
pub fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut c = stack[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for t in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, edges, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut done, &mut Vec::new()))
}
