//! What the stages after an `unwind` read of its documents, so that each copy the unwind makes
//! carries only that (as MongoDB's dependency analysis does): unwinding `options.region_codes`
//! of a job with 9 KB of options before a `group` by region copied the whole job per region, and
//! the stage limit then refused pipelines whose rows were tiny.

use std::collections::BTreeMap;

use super::parse::Stage;
use crate::value::Bson;

/// How deep a path is followed: below it the whole value is kept. Paths may be very long (a key
/// path is bounded by the request's size, not its depth); the tree and the pruning stay shallow.
const MAX_DEPTH: usize = 32;

/// The paths a document must keep, as a tree of their segments.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Needs {
    /// The whole value at this point is read (a path ends here).
    whole: bool,
    children: BTreeMap<String, Needs>,
}

impl Needs {
    /// The fields the stages after an unwind read, given those stages: `None` when the output
    /// may be the documents themselves (no later `group`, `count` or `project` replaces them).
    pub(super) fn after(stages: &[Stage]) -> Option<Needs> {
        #[cfg(test)]
        if tests::UNPRUNED.with(std::cell::Cell::get) {
            return None;
        }
        let mut needs = Needs::default();
        for stage in stages {
            match stage {
                Stage::Unwind { parts, .. } => needs.add(parts),
                Stage::Sort(keys) => {
                    for (key, _) in keys {
                        needs.add(&key.split('.').collect::<Vec<_>>());
                    }
                }
                Stage::Limit(_) | Stage::Skip(_) => {}
                Stage::Count { .. } => return Some(needs),
                Stage::Group { keys, fields } => {
                    for (_, p, _) in keys {
                        needs.add(&p.parts);
                    }
                    for f in fields {
                        if let Some(k) = &f.key {
                            needs.add(&k.parts);
                        }
                        for (_, p) in &f.push_fields {
                            needs.add(&p.parts);
                        }
                        for (p, _, _) in &f.conditions {
                            needs.add(&p.parts);
                        }
                    }
                    return Some(needs);
                }
                Stage::Project { rules, exclude } => {
                    if !exclude {
                        needs.add(&["_id"]);
                    }
                    for (_, key, _) in rules {
                        needs.add(&key.split('.').collect::<Vec<_>>());
                    }
                    return Some(needs);
                }
            }
        }
        None
    }

    /// Adds a path read whole; past [`MAX_DEPTH`] segments its prefix is kept whole.
    pub(super) fn add<S: AsRef<str>>(&mut self, parts: &[S]) {
        if let Some(node) = self.keep_path(parts) {
            node.whole = true;
            node.children.clear();
        }
    }

    /// Makes sure the nodes along `parts` (at most [`MAX_DEPTH`]) exist, so a value there keeps
    /// its place, without asking for more of it than other paths do. The last node, or `None`
    /// when a value on the way is read whole already.
    pub(super) fn keep_path<S: AsRef<str>>(&mut self, parts: &[S]) -> Option<&mut Needs> {
        let mut node = self;
        for part in parts.iter().take(MAX_DEPTH) {
            if node.whole {
                return None;
            }
            node = node.children.entry(part.as_ref().to_string()).or_default();
        }
        Some(node)
    }

    /// What is read of the value at `parts`: `None` when it is read whole.
    pub(super) fn below<S: AsRef<str>>(&self, parts: &[S]) -> Option<&Needs> {
        static NOTHING: Needs = Needs {
            whole: false,
            children: BTreeMap::new(),
        };
        let mut node = self;
        for part in parts {
            if node.whole {
                return None;
            }
            node = match node.children.get(part.as_ref()) {
                Some(child) => child,
                None => return Some(&NOTHING),
            };
        }
        if node.whole { None } else { Some(node) }
    }

    /// `doc` with only the fields on the tree's paths. Arrays and other values on a path are kept
    /// whole: a path reaches into an array's elements by field or by position, which only the
    /// whole array answers alike.
    pub(super) fn prune(&self, doc: Bson) -> Bson {
        if self.whole {
            return doc;
        }
        match doc {
            Bson::Obj(fields) => Bson::Obj(
                fields
                    .into_iter()
                    .filter_map(|(k, v)| self.children.get(k.as_ref()).map(|n| (k, n.prune(v))))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::value::Bson;
    use serde_json::json;

    thread_local! {
        /// Turns the pruning off, for answers to compare with.
        pub(super) static UNPRUNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Every pipeline is answered alike whether or not its unwinds keep only what later stages
    /// read: jobs with nested objects, arrays of objects and of scalars, positions, missing and
    /// null values; every stage after an unwind.
    #[test]
    fn pruned_unwinds_answer_alike() {
        let jobs: Vec<serde_json::Value> = (0..40)
            .map(|i| {
                let mut options = json!({
                    "regions": (0..i % 4).map(|r| format!("r{}", (r + i) % 3)).collect::<Vec<_>>(),
                    "tags": (0..i % 3).map(|t| json!({"key": format!("k{t}"), "value": i % 5, "pad": "x"})).collect::<Vec<_>>(),
                    "nested": {"a": {"b": i % 2, "c": [i, i + 1]}, "d": "keep"},
                    "pad": "y".repeat(50),
                });
                if i % 7 == 0 {
                    options["regions"] = json!(null);
                }
                if i % 5 == 0 {
                    options["regions"] = json!("solo");
                }
                let status = ["SUCCESS", "FAILURE", "IN_PROGRESS"][i % 3];
                json!({"job_id": format!("job-{i:03}"), "status": status,
                       "domain_id": "d1", "data_source_id": format!("ds-{}", i % 2),
                       "total_tasks": i % 4, "remained_tasks": i % 2,
                       "created_at": format!("2024-01-01T00:00:{:02}.000Z", i % 60), "options": options})
            })
            .collect();
        let mut index = crate::Index::new();
        for job in crate::offline::load_jobs(&json!(jobs).to_string()).unwrap() {
            index.upsert(job);
        }
        let unwind = |p: &str| json!({"unwind": {"path": p}});
        let group = |keys: serde_json::Value, fields: serde_json::Value| json!({"group": {"keys": keys, "fields": fields}});
        let pipelines = [
            vec![
                unwind("options.regions"),
                group(
                    json!([{"key": "options.regions", "name": "r"}]),
                    json!([{"operator": "count", "name": "n"}, {"operator": "add_to_set", "key": "job_id", "name": "ids"}]),
                ),
            ],
            vec![
                unwind("options.tags"),
                group(
                    json!([{"key": "options.tags.key", "name": "k"}]),
                    json!([{"operator": "push", "name": "p", "fields": [{"key": "options.nested.a", "name": "a"}, {"key": "status", "name": "s"}]},
                       {"operator": "sum", "key": "options.tags.value", "name": "v"}]),
                ),
            ],
            vec![unwind("options.regions"), {
                json!({"group": {"keys": [{"key": "status", "name": "s"}], "fields": [
                    {"operator": "count", "name": "n", "conditions": [{"key": "options.nested.a.b", "value": 1, "operator": "eq"}]}]}})
            }],
            vec![unwind("options.regions"), json!({"count": {"name": "n"}})],
            vec![
                unwind("options.tags"),
                unwind("options.nested.a.c"),
                group(
                    json!([{"key": "options.nested.a.c", "name": "c"}]),
                    json!([{"operator": "max", "key": "options.tags.value", "name": "m"}]),
                ),
            ],
            vec![
                unwind("options.regions"),
                json!({"sort": {"keys": [{"key": "options.nested.a.b", "desc": true}, {"key": "job_id"}]}}),
                json!({"limit": 17}),
                json!({"skip": 2}),
                group(
                    json!([{"key": "options.regions", "name": "r"}]),
                    json!([{"operator": "push", "name": "p", "fields": [{"key": "job_id", "name": "id"}]}]),
                ),
            ],
            vec![
                unwind("options.regions"),
                json!({"project": {"fields": [{"key": "options.regions", "name": "r"},
                {"key": "options.nested", "name": "n"}, {"key": "options.tags", "name": "t", "operator": "size"}]}}),
            ],
            vec![
                unwind("options.tags"),
                json!({"project": {"exclude_keys": true, "fields": [{"key": "options.tags", "name": "t"}]}}),
            ],
            vec![
                unwind("options.tags"),
                group(
                    json!([{"key": "options", "name": "o"}]),
                    json!([{"operator": "count", "name": "n"}]),
                ),
            ],
            vec![
                unwind("options.tags"),
                group(
                    json!([{"key": "options.nested.a.c.0", "name": "first"}]),
                    json!([{"operator": "count", "name": "n"}]),
                ),
            ],
            vec![
                unwind("options.regions"),
                json!({"sort": {"key": "options.pad"}}),
                json!({"limit": 5}),
            ],
            vec![
                group(
                    json!([{"key": "status", "name": "s"}]),
                    json!([{"operator": "push", "name": "p", "fields": [{"key": "options.regions", "name": "r"}]}]),
                ),
                unwind("p"),
                group(
                    json!([{"key": "p.r", "name": "r"}]),
                    json!([{"operator": "count", "name": "n"}]),
                ),
            ],
        ];
        let limits = crate::Limits::default();
        let now = chrono::Utc::now();
        for pipeline in pipelines {
            let request = json!({"domain_id": "d1", "query": {"aggregate": pipeline}});
            let answer = |unpruned: bool| {
                UNPRUNED.with(|c| c.set(unpruned));
                let a = crate::calls::stat(
                    &index,
                    &crate::record::Scope::all(),
                    &request,
                    now,
                    &limits,
                );
                UNPRUNED.with(|c| c.set(false));
                a
            };
            let pruned = answer(false);
            assert!(pruned.is_ok(), "{request}: {pruned:?}");
            assert_eq!(pruned, answer(true), "{request}");
        }
    }

    fn doc(v: serde_json::Value) -> Bson {
        Bson::from_json(&v)
    }

    #[test]
    fn only_the_paths_read_are_kept_and_arrays_stay_whole() {
        let mut needs = Needs::default();
        needs.add(&["options", "region"]);
        needs.add(&["options", "tags", "key"]);
        needs.add(&["status"]);
        let job = doc(serde_json::json!({
            "job_id": "j", "status": "SUCCESS",
            "options": {"region": {"a": 1}, "pad": "x", "tags": [{"key": 1, "other": 2}]}}));
        assert_eq!(
            needs.prune(job),
            doc(serde_json::json!({"status": "SUCCESS",
                "options": {"region": {"a": 1}, "tags": [{"key": 1, "other": 2}]}}))
        );
    }

    #[test]
    fn a_shorter_path_keeps_its_whole_subtree_and_depth_is_bounded() {
        let mut needs = Needs::default();
        needs.add(&["options", "a"]);
        needs.add(&["options"]);
        needs.add(&["options", "b"]);
        assert_eq!(
            needs.prune(doc(
                serde_json::json!({"options": {"a": 1, "c": 2}, "x": 3})
            )),
            doc(serde_json::json!({"options": {"a": 1, "c": 2}}))
        );
        let long: Vec<String> = std::iter::repeat_n("a".to_string(), 100_000).collect();
        let mut deep = Needs::default();
        deep.add(&long);
        let mut depth = 0;
        let mut node = &deep;
        while let Some(next) = node.children.get("a") {
            depth += 1;
            node = next;
        }
        assert_eq!((depth, node.whole), (MAX_DEPTH, true));
    }
}
