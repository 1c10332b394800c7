//! The OpenAPI documents of the aggregated group `query.cost-analysis.spaceone.dev/v1`, v2 and v3.
//! kube-apiserver's aggregator downloads them from every APIService backend (and logs a failure
//! every minute or two for a backend that has none); kubectl reads them through the API server for
//! `kubectl explain` and for client-side validation.
//!
//! The schemas are built from the engine's field tables (`spaceone_query::Field`), so the JobInfo a
//! `Job` object carries (the JobTaskInfo of a `JobTask`) is described by the same list that renders
//! it. Metadata is described
//! inline instead of by a reference to `ObjectMeta`: each v3 document must stand alone, and a v2
//! document that redefines a definition the API server already has gets it renamed on merge.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use spaceone_query::{Column, FieldType, JOB, JOB_TASK, Schema};

use crate::auth::{QUERY_GROUP as GROUP, QUERY_VERSION as VERSION};

/// The v3 path of the group version, as the discovery document names it.
pub const V3_PATH: &str = "apis/query.cost-analysis.spaceone.dev/v1";

/// Definition names, reversed-domain like Kubernetes' own (`io.k8s.api.batch.v1.Job`).
const PREFIX: &str = "dev.spaceone.cost-analysis.query.v1";

fn name(kind: &str) -> String {
    format!("{PREFIX}.{kind}")
}

fn gvk(kind: &str) -> Value {
    json!([{"group": GROUP, "version": VERSION, "kind": kind}])
}

/// One resource of the group: its kind, the field holding its Info, the Info's name and table,
/// its plural and its create-only statistics kind and plural.
struct Served {
    kind: &'static str,
    info_field: &'static str,
    info: &'static str,
    table: &'static Schema,
    plural: &'static str,
    stat_kind: &'static str,
    stats: &'static str,
    what: &'static str,
}

const SERVED: [Served; 2] = [
    Served {
        kind: "Job",
        info_field: "job",
        info: "JobInfo",
        table: &JOB,
        plural: "jobs",
        stat_kind: "JobStat",
        stats: "jobstats",
        what: "A SpaceONE Job (a CostAnalysisJob seen through the SpaceONE Job API), read-only.",
    },
    Served {
        kind: "JobTask",
        info_field: "jobTask",
        info: "JobTaskInfo",
        table: &JOB_TASK,
        plural: "jobtasks",
        stat_kind: "JobTaskStat",
        stats: "jobtaskstats",
        what: "A SpaceONE JobTask (a CostAnalysisJobTask seen through the SpaceONE JobTask API), \
               read-only.",
    },
];

/// The Info of a resource (JobInfo, JobTaskInfo), one property per Info field of its table.
fn info_schema(info: &str, table: &'static Schema) -> Value {
    let properties: Map<String, Value> = table
        .info_fields()
        .map(|f| {
            let schema = match (f.def().column, f.ty()) {
                (Column::Status(s), _) => json!({"type": "string", "enum": s.stored}),
                (_, FieldType::Str) => json!({"type": "string"}),
                (_, FieldType::Int) => json!({"type": "integer", "format": "int64"}),
                (_, FieldType::Date) => json!({"type": "string", "format": "date-time"}),
                (_, FieldType::Dict) => {
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
                }
            };
            (f.name().to_string(), schema)
        })
        .collect();
    json!({
        "description": format!("A SpaceONE {info}, exactly as the SpaceONE REST API renders it."),
        "type": "object",
        "properties": properties,
    })
}

fn metadata_schema() -> Value {
    json!({
        "description": "Standard object metadata: the name is the SpaceONE job_id (job_task_id).",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    })
}

fn list_metadata_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "continue": {"type": "string"},
            "remainingItemCount": {"type": "integer", "format": "int64"},
            "resourceVersion": {"type": "string"},
        },
    })
}

fn type_meta() -> [(&'static str, Value); 2] {
    [
        ("apiVersion", json!({"type": "string"})),
        ("kind", json!({"type": "string"})),
    ]
}

fn stat_spec(plural: &str) -> Value {
    json!({
        "type": "object",
        "required": ["query"],
        "properties": {
            "query": {
                "description": "A SpaceONE StatisticsQuery (filter, aggregate, page, ...).",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
            },
            "domainId": {
                "description": format!("Only the {plural} of this SpaceONE domain."),
                "type": "string",
            },
        },
    })
}

/// The definitions, with `reference` turning a definition name into a `$ref`.
fn schemas(reference: &dyn Fn(&str) -> Value) -> Map<String, Value> {
    let object = |description: &str, kind: &str, fields: Vec<(&str, Value)>| {
        let mut properties: Map<String, Value> = type_meta()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for (k, v) in fields {
            properties.insert(k.to_string(), v);
        }
        json!({
            "description": description,
            "type": "object",
            "properties": properties,
            "x-kubernetes-group-version-kind": gvk(kind),
        })
    };
    let mut defs = Map::new();
    for r in &SERVED {
        let stat = format!(
            "A SpaceONE StatisticsQuery over the {} of a namespace: create it, and the answer \
             is the same object with the results in its status. Nothing is stored.",
            r.plural
        );
        defs.insert(name(r.info), info_schema(r.info, r.table));
        defs.insert(
            name(r.kind),
            object(
                r.what,
                r.kind,
                vec![
                    ("metadata", metadata_schema()),
                    (r.info_field, reference(&name(r.info))),
                ],
            ),
        );
        let list = format!("{}List", r.kind);
        defs.insert(
            name(&list),
            object(
                &format!("A page of {}s.", r.kind),
                &list,
                vec![
                    ("metadata", list_metadata_schema()),
                    (
                        "items",
                        json!({"type": "array", "items": reference(&name(r.kind))}),
                    ),
                ],
            ),
        );
        defs.insert(
            name(r.stat_kind),
            object(
                &stat,
                r.stat_kind,
                vec![
                    ("metadata", metadata_schema()),
                    ("spec", stat_spec(r.plural)),
                    (
                        "status",
                        json!({
                            "description": "The answer: SpaceONE's stat results.",
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                        }),
                    ),
                ],
            ),
        );
    }
    defs
}

/// The operations, with `ok` turning a definition name into a 200 response.
fn paths(ok: &dyn Fn(&str) -> Value, body: &dyn Fn(&str) -> Value) -> Map<String, Value> {
    let base = format!("/apis/{GROUP}/{VERSION}");
    let action = |kind: &str| json!({"group": GROUP, "version": VERSION, "kind": kind});
    let op = |id: &str, description: &str, verb: &str, kind: &str, response: &str| {
        json!({
            "operationId": id,
            "description": description,
            "tags": ["queryCostAnalysisSpaceoneDev_v1"],
            "responses": {"200": ok(&name(response)), "401": {"description": "Unauthorized"}},
            "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": action(kind),
        })
    };
    let mut p = Map::new();
    for r in &SERVED {
        let (kind, plural, list) = (r.kind, r.plural, format!("{}List", r.kind));
        let mut create = op(
            &format!(
                "createQueryCostAnalysisSpaceoneDevV1Namespaced{}",
                r.stat_kind
            ),
            &format!("evaluate a StatisticsQuery over the {plural} of a namespace"),
            "post",
            r.stat_kind,
            r.stat_kind,
        );
        if let Some(o) = create.as_object_mut() {
            o.extend(
                body(&name(r.stat_kind))
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        p.insert(
            format!("{base}/{plural}"),
            json!({"get": op(&format!("listQueryCostAnalysisSpaceoneDevV1{kind}ForAllNamespaces"), &format!("list {kind}s of every namespace"), "list", kind, &list)}),
        );
        p.insert(
            format!("{base}/namespaces/{{namespace}}/{plural}"),
            json!({"get": op(&format!("listQueryCostAnalysisSpaceoneDevV1Namespaced{kind}"), &format!("list {kind}s"), "list", kind, &list)}),
        );
        p.insert(
            format!("{base}/namespaces/{{namespace}}/{plural}/{{name}}"),
            json!({"get": op(&format!("readQueryCostAnalysisSpaceoneDevV1Namespaced{kind}"), &format!("read a {kind}"), "get", kind, kind)}),
        );
        p.insert(
            format!("{base}/namespaces/{{namespace}}/{}", r.stats),
            json!({ "post": create }),
        );
    }
    p
}

/// Swagger 2.0, as `/openapi/v2` serves it.
pub fn v2() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let reference = |n: &str| json!({"$ref": format!("#/definitions/{n}")});
        let ok = |n: &str| json!({"description": "OK", "schema": reference(n)});
        let body = |n: &str| {
            json!({"parameters": [{"name": "body", "in": "body", "required": true, "schema": reference(n)}]})
        };
        json!({
            "swagger": "2.0",
            "info": {"title": "cost-analysis-operator", "version": VERSION},
            "paths": paths(&ok, &body),
            "definitions": schemas(&reference),
        })
    })
}

/// OpenAPI 3.0 for the group version, as `/openapi/v3/apis/<group>/<version>` serves it.
pub fn v3() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let reference = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
        let ok = |n: &str| {
            json!({"description": "OK", "content": {"application/json": {"schema": reference(n)}}})
        };
        let body = |n: &str| {
            json!({"requestBody": {"required": true, "content": {"application/json": {"schema": reference(n)}}}})
        };
        json!({
            "openapi": "3.0.0",
            "info": {"title": "cost-analysis-operator", "version": VERSION},
            "paths": paths(&ok, &body),
            "components": {"schemas": schemas(&reference)},
        })
    })
}

/// The v3 discovery document: where the group version's document is, with its hash so that
/// clients may cache it.
pub fn v3_discovery() -> Value {
    json!({"paths": {V3_PATH: {"serverRelativeURL": format!("/openapi/v3/{V3_PATH}?hash={}", v3_hash())}}})
}

/// The hash of the v3 document, as Kubernetes computes its own (SHA-512, upper-case hex).
pub fn v3_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let text = serde_json::to_vec(v3()).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA512, &text);
        digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` points at a definition of the same document.
    fn refs_resolve(doc: &Value, prefix: &str, defs: &Value) {
        match doc {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let n = r.strip_prefix(prefix).expect("a local reference");
                    assert!(defs.get(n).is_some(), "{r} does not resolve");
                }
                m.values().for_each(|v| refs_resolve(v, prefix, defs));
            }
            Value::Array(a) => a.iter().for_each(|v| refs_resolve(v, prefix, defs)),
            _ => {}
        }
    }

    #[test]
    fn both_documents_describe_every_kind_and_every_jobinfo_field() {
        let v2 = v2();
        let v3 = v3();
        refs_resolve(v2, "#/definitions/", &v2["definitions"]);
        refs_resolve(v3, "#/components/schemas/", &v3["components"]["schemas"]);
        for kind in [
            "Job",
            "JobList",
            "JobStat",
            "JobTask",
            "JobTaskList",
            "JobTaskStat",
        ] {
            let d = &v3["components"]["schemas"][name(kind)];
            assert_eq!(d["x-kubernetes-group-version-kind"][0]["kind"], kind);
            assert_eq!(
                v2["definitions"][name(kind)]["x-kubernetes-group-version-kind"],
                d["x-kubernetes-group-version-kind"]
            );
        }
        let info = &v3["components"]["schemas"][name("JobInfo")]["properties"];
        for f in JOB.info_fields() {
            assert!(info.get(f.name()).is_some(), "{} is described", f.name());
        }
        assert_eq!(info["status"]["enum"].as_array().map(Vec::len), Some(5));
        let task = &v3["components"]["schemas"][name("JobTaskInfo")]["properties"];
        for f in JOB_TASK.info_fields() {
            assert!(task.get(f.name()).is_some(), "{} is described", f.name());
        }
        assert!(task.get("created_count").is_none(), "not in JobTaskInfo");
        let job_task = &v3["components"]["schemas"][name("JobTask")]["properties"];
        assert!(
            job_task["jobTask"]["$ref"]
                .as_str()
                .unwrap()
                .ends_with("JobTaskInfo")
        );
        for path in [
            "jobtasks",
            "namespaces/{namespace}/jobtasks/{name}",
            "namespaces/{namespace}/jobtaskstats",
        ] {
            let path = format!("/apis/{GROUP}/{VERSION}/{path}");
            assert!(
                v2["paths"].get(&path).is_some() && v3["paths"].get(&path).is_some(),
                "{path}"
            );
        }
        assert!(
            v3_discovery()["paths"][V3_PATH]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .ends_with(v3_hash())
        );
        assert_eq!(v3_hash().len(), 128);
    }
}
