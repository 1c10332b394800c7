//! Properties over generated input: no request panics, paging neither loses nor repeats records,
//! and `count_only` counts exactly what the unpaged query returns.

#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use spaceone_query::{Index, Job, JobStatus, Limits, Scope, calls};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        any::<f64>().prop_map(|f| json!(f)),
        // Arbitrary Unicode (any scalar value, control characters included).
        any::<String>().prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
        date_like().prop_map(Value::String),
        prop::sample::select(vec![
            "status",
            "job_id",
            "eq",
            "in",
            "contain",
            "options.x",
            "now/d-1d",
            "2024-01-02"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    3 => prop::sample::select(vec![
                    "filter",
                    "filter_or",
                    "sort",
                    "page",
                    "k",
                    "v",
                    "o",
                    "key",
                    "value",
                    "operator",
                    "start",
                    "limit",
                    "aggregate",
                    "group",
                    "keys",
                    "fields",
                    "name",
                    "count",
                    "distinct",
                    "project",
                    "unwind",
                    "path",
                    "desc",
                    "only",
                    "minimal",
                    "count_only",
                    "keyword",
                    "conditions",
                    "date_format",
                    "skip",
                    "domain_id",
                    "job_id",
                    "status",
                    "exclude_keys",
                ])
                    .prop_map(str::to_string),
                    1 => any::<String>(),
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that look like dates, with arbitrary characters in and around them.
fn date_like() -> impl Strategy<Value = String> {
    (
        "[0-9]{0,4}[-/]?[0-9]{0,2}[-/]?[0-9]{0,2}",
        "([T ][0-9]{0,2}(:[0-9]{0,2}){0,2}([.,][0-9]{0,7})?)?",
        "([Zz]|[+-][0-9é:]{0,5})?",
        "\\PC{0,3}",
        0usize..12,
        "\\PC{0,2}",
    )
        .prop_map(|(d, t, z, tail, at, ins)| {
            let mut s = format!("{d}{t}{z}{tail}");
            let at = (0..=at.min(s.len()))
                .rev()
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(0);
            s.insert_str(at, &ins);
            s
        })
}

/// Every outcome is checked: an answer, or a SpaceONE error (an `ERROR_` code and a message).
fn spaceone<T>(r: Result<T, spaceone_query::Error>) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        prop_assert!(e.code.starts_with("ERROR_"), "not a SpaceONE error: {e:?}");
        prop_assert!(!e.message.is_empty(), "empty message: {e:?}");
    }
    Ok(())
}

fn condition() -> impl Strategy<Value = Value> {
    let keys = vec![
        "job_id",
        "status",
        "total_tasks",
        "remained_tasks",
        "data_source_id",
        "created_at",
        "finished_at",
        "error_code",
        "options.mode",
        "options.n",
    ];
    // Every operator the engine knows (as the reference lists them).
    let ops = spaceone_query::FILTER_OPERATORS.to_vec();
    let values = prop_oneof![
        Just(json!("SUCCESS")),
        Just(json!("job-0")),
        Just(json!(2)),
        Just(json!(true)),
        Just(json!(null)),
        Just(json!("2024-01-03")),
        Just(json!("now/d-3d")),
        Just(json!(["SUCCESS", "FAILURE"])),
        Just(json!(["1", "2"])),
        Just(json!("a")),
        date_like().prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        prop::collection::vec(any::<String>(), 0..4).prop_map(|v| json!(v)),
        prop::collection::vec(date_like(), 0..3).prop_map(|v| json!(v)),
    ];
    (
        prop_oneof![
            4 => prop::sample::select(keys).prop_map(str::to_string),
            1 => any::<String>(),
            1 => "options\\.\\PC{0,6}",
        ],
        prop_oneof![
            4 => prop::sample::select(ops).prop_map(str::to_string),
            1 => any::<String>(),
        ],
        values,
    )
        .prop_map(|(k, o, v)| json!({"k": k, "v": v, "o": o}))
}

fn index(n: usize) -> Index {
    let mut index = Index::new();
    for i in 0..n {
        let status = JobStatus::ALL[i % 5];
        let mut options = serde_json::Map::new();
        options.insert(
            "mode".into(),
            json!(if i % 3 == 0 { "MANUAL" } else { "SCHEDULED" }),
        );
        options.insert("n".into(), json!(i % 4));
        index.upsert(Job {
            namespace: format!("ns-{}", i % 2),
            job_id: format!("job-{i}"),
            status,
            error_code: (status == JobStatus::Failure).then(|| "ERROR_JOB_TASK".into()),
            error_message: None,
            total_tasks: (i % 7) as i64,
            remained_tasks: (i % 3) as i64,
            data_source_id: format!("ds-{}", i % 4),
            domain_id: "domain-1".into(),
            options,
            // Repeated creation times exercise the tie-break.
            created_at: Utc
                .timestamp_opt(1_704_067_200 + (i / 3) as i64 * 3600, 0)
                .single(),
            updated_at: None,
            finished_at: (status != JobStatus::InProgress)
                .then(|| Utc.timestamp_opt(1_704_153_600, 0).single())
                .flatten(),
            last_changed_at: None,
        });
    }
    index
}

fn ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .map(|r| r.iter().map(|j| j["job_id"].to_string()).collect())
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_never_panic(query in any_json(), top in any_json()) {
        let idx = index(20);
        let now = Utc::now();
        let scope = Scope::all();
        let limits = Limits::default();
        spaceone(calls::list(&idx, &scope, &json!({"domain_id": "domain-1", "query": query}), now, &limits))?;
        spaceone(calls::stat(&idx, &scope, &json!({"domain_id": "domain-1", "query": query}), now, &limits))?;
        spaceone(calls::list(&idx, &scope, &top, now, &limits))?;
        spaceone(calls::stat(&idx, &scope, &top, now, &limits))?;
        spaceone(calls::get(&idx, &scope, &top))?;
        spaceone(calls::select(&idx, &scope, &query, now, &limits))?;
        spaceone(calls::stat_query(&idx, &scope, &query, now, &limits))?;
    }

    #[test]
    fn structured_list_requests_never_panic(
        conds in prop::collection::vec(condition(), 0..4),
        or in prop::collection::vec(condition(), 0..2),
        sort_key in prop_oneof![Just("created_at".to_string()), any::<String>(), "options\\.\\PC{0,4}"],
        keyword in prop_oneof![Just(Value::Null), any::<String>().prop_map(Value::String)],
        only in prop::collection::vec(any::<String>(), 0..2),
    ) {
        let idx = index(20);
        let query = json!({"filter": conds, "filter_or": or, "sort": [{"key": sort_key}],
                           "keyword": keyword, "page": {"limit": 3}});
        spaceone(calls::list(&idx, &Scope::all(), &json!({"domain_id": "domain-1", "query": query}), Utc::now(), &Limits::default()))?;
        let mut with_only = query.clone();
        with_only["only"] = json!(only);
        spaceone(calls::list(&idx, &Scope::all(), &json!({"domain_id": "domain-1", "query": with_only}), Utc::now(), &Limits::default()))?;
        spaceone(calls::select(&idx, &Scope::all(), &query, Utc::now(), &Limits::default()))?;
    }

    #[test]
    fn structured_aggregates_never_panic(
        conds in prop::collection::vec(condition(), 0..2),
        key in prop_oneof![Just("status".to_string()), Just("created_at".to_string()), any::<String>()],
        name in any::<String>(),
        op in prop_oneof![Just("push".to_string()), Just("sum".to_string()), Just("add_to_set".to_string()), any::<String>()],
        date_format in prop_oneof![Just(Value::Null), Just(json!("%Y-%m")), any::<String>().prop_map(Value::String)],
        sort_key in any::<String>(),
        distinct in prop_oneof![Just(Value::Null), any::<String>().prop_map(Value::String)],
    ) {
        let idx = index(20);
        let aggregate = json!([
            {"group": {"keys": [{"key": key, "name": name, "date_format": date_format}],
                       "fields": [{"key": key, "name": format!("{name}x"), "operator": op}]}},
            {"unwind": {"path": format!("{name}x")}},
            {"sort": {"key": sort_key, "desc": true}},
            {"project": {"fields": [{"key": name, "name": sort_key, "operator": "size"}]}},
        ]);
        let query = json!({"filter": conds, "aggregate": aggregate});
        spaceone(calls::stat(&idx, &Scope::all(), &json!({"domain_id": "domain-1", "query": query}), Utc::now(), &Limits::default()))?;
        let d = json!({"filter": conds, "distinct": distinct});
        spaceone(calls::stat(&idx, &Scope::all(), &json!({"domain_id": "domain-1", "query": d}), Utc::now(), &Limits::default()))?;
    }

    #[test]
    fn structured_stat_requests_never_panic(conds in prop::collection::vec(condition(), 0..3), stages in prop::collection::vec(any_json(), 0..4)) {
        let idx = index(20);
        spaceone(calls::stat(&idx, &Scope::all(), &json!({"domain_id": "domain-1", "query": {"filter": conds, "aggregate": stages}}), Utc::now(), &Limits::default()))?;
    }

    #[test]
    fn paging_never_loses_or_repeats(
        conds in prop::collection::vec(condition(), 0..3),
        sort_key in prop::sample::select(vec!["status", "total_tasks", "created_at", "options.n", "unknown"]),
        desc in any::<bool>(),
        limit in 1u64..9,
    ) {
        let idx = index(40);
        let now = Utc::now();
        let scope = Scope::all();
        let base = json!({"filter": conds, "sort": [{"key": sort_key, "desc": desc}]});
        let Ok(all) = calls::list(&idx, &scope, &json!({"domain_id": "domain-1", "query": base}), now, &Limits::default()) else {
            return Ok(());
        };
        let total = all["total_count"].as_u64().unwrap_or(0);
        let mut paged = Vec::new();
        let mut start = 1;
        while start <= total {
            let mut q = base.clone();
            q["page"] = json!({"start": start, "limit": limit});
            let page = calls::list(&idx, &scope, &json!({"domain_id": "domain-1", "query": q}), now, &Limits::default());
            let page = page.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(page["total_count"].as_u64().unwrap_or(0), total);
            paged.extend(ids(&page));
            start += limit;
        }
        prop_assert_eq!(paged, ids(&all));

        let mut q = base.clone();
        q["count_only"] = json!(true);
        let counted = calls::list(&idx, &scope, &json!({"domain_id": "domain-1", "query": q}), now, &Limits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(counted["total_count"].as_u64().unwrap_or(0), ids(&all).len() as u64);
        prop_assert_eq!(counted.get("results"), Some(&json!([])));
    }

    #[test]
    fn scope_bounds_every_answer(
        conds in prop::collection::vec(condition(), 0..2),
        domain in prop::sample::select(vec!["domain-0", "domain-1", "domain-9"]),
        namespace in prop::option::of(prop::sample::select(vec!["ns-0", "ns-1"])),
        keyword in prop::sample::select(vec!["", "job", "1", "job-3"]),
    ) {
        let idx = multi_domain_index(60);
        let now = Utc::now();
        let scope = Scope { namespace: namespace.map(str::to_string), domains: Some(vec![domain.to_string()]) };
        // The request names another domain than the scope allows: nothing may come back.
        for asked in ["domain-0", "domain-1"] {
            let query = json!({"filter": conds, "keyword": keyword});
            let Ok(list) = calls::list(&idx, &scope, &json!({"domain_id": asked, "query": query}), now, &Limits::default()) else {
                return Ok(());
            };
            let total = list["total_count"].as_u64().unwrap_or(0);
            if asked != domain {
                prop_assert_eq!(total, 0);
            }
            for j in list["results"].as_array().into_iter().flatten() {
                prop_assert_eq!(j["domain_id"].as_str(), Some(domain));
            }
            let counted = calls::stat(&idx, &scope, &json!({"domain_id": asked, "query": {
                "filter": conds, "keyword": keyword, "aggregate": [{"count": {"name": "n"}}]}}), now, &Limits::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let n = counted["results"][0]["n"].as_f64().unwrap_or(0.0) as u64;
            prop_assert_eq!(n, total);
        }
    }

    #[test]
    fn equality_on_interned_fields_agrees_with_in(
        field in prop::sample::select(vec!["domain_id", "data_source_id"]),
        value in prop::sample::select(vec!["domain-0", "domain-1", "ds-0", "ds-3", "nope", ""]),
        remove in 0usize..60,
    ) {
        let mut idx = multi_domain_index(60);
        // A removed job leaves its interned strings behind: equality must still be right.
        idx.remove(&format!("ns-{}", remove % 2), &format!("job-{remove}"));
        let now = Utc::now();
        let run = |o: &str, v: Value| {
            calls::select(&idx, &Scope::all(), &json!({"filter": [{"k": field, "v": v, "o": o}]}), now, &Limits::default())
                .map(|(jobs, total)| (jobs.into_iter().map(|j| j.job_id).collect::<Vec<_>>(), total))
                .map_err(|e| TestCaseError::fail(e.to_string()))
        };
        prop_assert_eq!(run("eq", json!(value))?, run("in", json!([value]))?);
    }

    #[test]
    fn stat_pages_concatenate_to_the_whole(
        key in prop::sample::select(vec!["status", "data_source_id", "total_tasks", "options.mode"]),
        limit in 1u64..5,
        distinct in any::<bool>(),
    ) {
        let idx = multi_domain_index(60);
        let now = Utc::now();
        let query = |page: Value| if distinct {
            json!({"distinct": key, "page": page})
        } else {
            json!({"aggregate": [
                {"group": {"keys": [{"key": key, "name": "k"}], "fields": [{"name": "c", "operator": "count"}]}},
                {"sort": [{"key": "k"}]}], "page": page})
        };
        let all = calls::stat(&idx, &Scope::all(), &json!({"domain_id": "domain-1", "query": query(json!({}))}), now, &Limits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(all.get("total_count").is_none());
        let whole = all["results"].as_array().cloned().unwrap_or_default();
        let mut paged = Vec::new();
        let mut start = 1;
        loop {
            let page = calls::stat(&idx, &Scope::all(), &json!({"domain_id": "domain-1",
                "query": query(json!({"start": start, "limit": limit}))}), now, &Limits::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(page["total_count"].as_f64(), Some(whole.len() as f64));
            let rows = page["results"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                break;
            }
            paged.extend(rows);
            start += limit;
        }
        prop_assert_eq!(paged, whole);
    }
}

fn multi_domain_index(n: usize) -> Index {
    let mut index = Index::new();
    for i in 0..n {
        let status = JobStatus::ALL[i % 5];
        let mut options = serde_json::Map::new();
        options.insert(
            "mode".into(),
            json!(if i % 3 == 0 { "MANUAL" } else { "SCHEDULED" }),
        );
        index.upsert(Job {
            namespace: format!("ns-{}", i % 2),
            job_id: format!("job-{i}"),
            status,
            error_code: None,
            error_message: None,
            total_tasks: (i % 7) as i64,
            remained_tasks: (i % 3) as i64,
            data_source_id: format!("ds-{}", i % 4),
            domain_id: format!("domain-{}", (i / 2) % 2),
            options,
            created_at: Utc
                .timestamp_opt(1_704_067_200 + (i / 4) as i64 * 60, 0)
                .single(),
            updated_at: None,
            finished_at: None,
            last_changed_at: None,
        });
    }
    index
}

/// One step of a random history: upsert job `id` into (namespace, domain, data source), or
/// remove it from a namespace.
#[derive(Clone, Debug)]
enum Step {
    Upsert(u8, u8, u8, u8),
    Remove(u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..12, 0u8..2, 0u8..3, 0u8..3).prop_map(|(i, n, d, s)| Step::Upsert(i, n, d, s)),
        1 => (0u8..12, 0u8..2).prop_map(|(i, n)| Step::Remove(i, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The posting lists that narrow a scan (namespace, domain, data source) stay exact through
    /// any history of inserts, moves between values and removals: every call answers what a
    /// plain scan over the surviving jobs answers.
    #[test]
    fn narrowed_scans_agree_with_a_plain_scan(
        steps in prop::collection::vec(step(), 0..60),
        namespace in prop::option::of(0u8..2),
        domain in 0u8..4,
        data_source in prop::option::of(0u8..4),
    ) {
        let mut idx = Index::new();
        let mut mirror = std::collections::BTreeMap::new();
        for s in &steps {
            match *s {
                Step::Upsert(i, n, d, ds) => {
                    let job = Job {
                        namespace: format!("ns-{n}"),
                        job_id: format!("job-{i}"),
                        status: JobStatus::InProgress,
                        error_code: None,
                        error_message: None,
                        total_tasks: 0,
                        remained_tasks: 0,
                        data_source_id: format!("ds-{ds}"),
                        domain_id: format!("domain-{d}"),
                        options: serde_json::Map::new(),
                        // Shared creation seconds, as on a cluster: order ties are common.
                        created_at: Utc.timestamp_opt(1_704_067_200 + i64::from(i / 3), 0).single(),
                        updated_at: None,
                        finished_at: None,
                        last_changed_at: None,
                    };
                    mirror.insert((n, i), (d, ds));
                    idx.upsert(job);
                }
                Step::Remove(i, n) => {
                    prop_assert_eq!(idx.remove(&format!("ns-{n}"), &format!("job-{i}")), mirror.remove(&(n, i)).is_some());
                }
            }
        }
        prop_assert_eq!(idx.len(), mirror.len());
        // Newest first; ties by namespace, then job_id.
        let mut newest: Vec<(u8, u8)> = mirror
            .iter()
            .filter(|((n, _), (d, ds))| {
                namespace.is_none_or(|want| want == *n) && *d == domain && data_source.is_none_or(|want| want == *ds)
            })
            .map(|(k, _)| *k)
            .collect();
        newest.sort_by(|(na, ia), (nb, ib)| (ib / 3).cmp(&(ia / 3)).then(na.cmp(nb)).then(format!("job-{ia}").cmp(&format!("job-{ib}"))));
        let newest: Vec<String> = newest.iter().map(|(n, i)| format!("ns-{n}/job-{i}")).collect();
        let mut expected = newest.clone();
        expected.sort();
        let scope = Scope {
            namespace: namespace.map(|n| format!("ns-{n}")),
            domains: Some(vec![format!("domain-{domain}")]),
        };
        let mut request = json!({"domain_id": format!("domain-{domain}"), "query": {"page": {"limit": 1000}}});
        if let Some(ds) = data_source {
            request["data_source_id"] = json!(format!("ds-{ds}"));
        }
        let answer = calls::list(&idx, &scope, &request, Utc::now(), &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // JobInfo carries no namespace: compare the job ids in order.
        let listed: Vec<&str> = answer["results"].as_array().into_iter().flatten()
            .filter_map(|j| j["job_id"].as_str())
            .collect();
        let newest_ids: Vec<&str> = newest.iter().filter_map(|k| k.split('/').nth(1)).collect();
        prop_assert_eq!(listed, newest_ids);
        // Pages of 2 (explicit newest-first sort) concatenate to the same order.
        let mut paged = Vec::new();
        for start in (1..=newest.len().max(1)).step_by(2) {
            let mut r = request.clone();
            r["query"] = json!({"sort": [{"key": "created_at", "desc": true}], "page": {"start": start, "limit": 2}});
            let (rows, total) = calls::select(&idx, &scope, &answer_query(&r), Utc::now(), &Limits::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(total, newest.len());
            paged.extend(rows.iter().map(|j| format!("{}/{}", j.namespace, j.job_id)));
        }
        prop_assert_eq!(&paged, &newest);
        let (rows, total) = calls::select(&idx, &scope, &answer_query(&request), Utc::now(), &Limits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut got: Vec<String> = rows.iter().map(|j| format!("{}/{}", j.namespace, j.job_id)).collect();
        got.sort();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(total, expected.len());
        prop_assert_eq!(answer["total_count"].as_u64().unwrap_or(0), expected.len() as u64);
        // `get` finds a job by id alone, in whichever namespace holds it.
        for ((n, i), (d, _)) in &mirror {
            let got = calls::get(&idx, &Scope::all(), &json!({"job_id": format!("job-{i}"), "domain_id": format!("domain-{d}")}));
            prop_assert!(got.is_ok(), "ns-{n}/job-{i} not found");
        }
        let scanned = calls::stat(&idx, &scope, &json!({"domain_id": format!("domain-{domain}"), "query": {
            "filter": request.get("data_source_id").map(|ds| vec![json!({"k": "data_source_id", "v": ds, "o": "eq"})]).unwrap_or_default(),
            "aggregate": [{"count": {"name": "n"}}]}}), Utc::now(), &Limits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(scanned["results"][0]["n"].as_f64().unwrap_or(0.0) as usize, expected.len());
    }
}

/// The filter `list` builds from a request's fields, as a bare query for `select` (with the
/// request's sort and page, if any).
fn answer_query(request: &Value) -> Value {
    let mut filter = vec![json!({"k": "domain_id", "v": request["domain_id"], "o": "eq"})];
    if let Some(ds) = request.get("data_source_id") {
        filter.push(json!({"k": "data_source_id", "v": ds, "o": "eq"}));
    }
    let mut query = json!({"filter": filter, "page": {"limit": 1000}});
    for k in ["sort", "page"] {
        if let Some(v) = request["query"].get(k) {
            query[k] = v.clone();
        }
    }
    query
}

/// The filter's comparison operators and the stat group conditions are one vocabulary: a `count`
/// whose condition is `{total_tasks <op> v}` counts the jobs the filter `{total_tasks <op> v}`
/// lists, for every operator they share (`not` aside: MongoDB refuses it in a condition).
#[test]
fn a_group_condition_counts_what_the_same_filter_lists() {
    let index = index(40);
    let call = |verb: &str, query: Value| {
        let request = json!({"domain_id": "domain-1", "query": query});
        let (now, limits) = (Utc::now(), Limits::default());
        match verb {
            "list" => calls::list(&index, &Scope::all(), &request, now, &limits),
            _ => calls::stat(&index, &Scope::all(), &request, now, &limits),
        }
    };
    for op in ["eq", "gt", "gte", "lt", "lte"] {
        for v in -1..=7 {
            let listed = call(
                "list",
                json!({"filter": [{"k": "total_tasks", "v": v, "o": op}], "count_only": true}),
            )
            .unwrap();
            let counted = call(
                "stat",
                json!({"aggregate": [{"group": {"fields": [{"name": "n", "operator": "count",
                    "conditions": [{"key": "total_tasks", "value": v, "operator": op}]}]}}]}),
            )
            .unwrap();
            // A Struct's numbers are doubles.
            assert_eq!(
                counted["results"][0]["n"].as_f64(),
                listed["total_count"].as_f64(),
                "{op} {v}: {counted} against {listed}"
            );
        }
    }
    let not = call(
        "stat",
        json!({"aggregate": [{"group": {"fields": [{"name": "n", "operator": "count",
            "conditions": [{"key": "total_tasks", "value": 1, "operator": "not"}]}]}}]}),
    )
    .unwrap_err();
    assert!(
        not.message.contains("$not takes exactly 1 arguments"),
        "{}",
        not.message
    );
}
