//! Hand-written loops that compute the benchmark answers straight from the index's records: the
//! physical limit of this layout, measured beside the engine in `benches/engine.rs`. Not an API.

use crate::index::Index;
use crate::model::JobStatus;
use crate::record::Record;
use crate::render::{Projection, info};
use crate::schema::Resource;
use serde_json::{Value, json};

/// `list` of one domain's jobs in one status, newest first, first `limit` rows, as JobsInfo.
pub fn list_status_newest(index: &Index, domain: &str, status: JobStatus, limit: usize) -> Value {
    list_status_newest_of(index, domain, status as u8, limit)
}

/// [`list_status_newest`] for any resource, the status by its stored ordinal.
pub fn list_status_newest_of<R: Resource>(
    index: &Index<R>,
    domain: &str,
    status: u8,
    limit: usize,
) -> Value {
    let mut rows: Vec<&Record> = index
        .slots()
        .iter()
        .filter(|r| r.status == status && r.domain.as_ref() == domain)
        .collect();
    let total = rows.len();
    let order = |a: &&Record, b: &&Record| b.created.cmp(&a.created).then_with(|| a.natural_cmp(b));
    if limit > 0 && limit < rows.len() {
        rows.select_nth_unstable_by(limit.saturating_sub(1), order);
        rows.truncate(limit);
    }
    rows.sort_unstable_by(order);
    let schema = index.slots().schema();
    let results: Vec<Value> = rows
        .iter()
        .map(|r| info(r, schema, &Projection::Full))
        .collect();
    json!({"results": results, "total_count": total})
}

/// `stat` of one domain's jobs grouped by status with a count, as the Struct answer.
pub fn count_by_status(index: &Index, domain: &str) -> Value {
    count_by_status_of(index, domain)
}

/// [`count_by_status`] for any resource.
pub fn count_by_status_of<R: Resource>(index: &Index<R>, domain: &str) -> Value {
    let statuses = R::schema().statuses().map_or(&[][..], |s| s.stored);
    let mut counts = [0u64; 8];
    for r in index.slots().iter() {
        if r.domain.as_ref() == domain
            && let Some(n) = counts.get_mut(usize::from(r.status))
        {
            *n = n.saturating_add(1);
        }
    }
    let mut rows: Vec<Value> = Vec::new();
    for (name, n) in statuses.iter().zip(counts) {
        if n > 0 {
            rows.push(json!({"status": name, "count": n as f64}));
        }
    }
    rows.sort_by(|a, b| a["status"].as_str().cmp(&b["status"].as_str()));
    json!({"results": rows})
}
