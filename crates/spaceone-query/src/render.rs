//! JobInfo in proto3 JSON, as SpaceONE's REST gateway prints it: field-number order, default values
//! (empty strings, zeros) left out, enums by name, datetimes as `2022-04-02T09:17:44.031Z`.

use serde_json::{Map, Value};

use crate::index::{NO_TIME, Rec};
use crate::model::{Field, Job};
use crate::time::render_info;

/// Fields of the seed's JobInfo (spaceone-api 1.8.7) in field-number order.
const INFO_FIELDS: [Field; 12] = [
    Field::JobId,
    Field::Status,
    Field::ErrorCode,
    Field::ErrorMessage,
    Field::TotalTasks,
    Field::RemainedTasks,
    Field::DataSourceId,
    Field::DomainId,
    Field::CreatedAt,
    Field::UpdatedAt,
    Field::FinishedAt,
    Field::LastChangedAt,
];

/// `JobInfo(minimal=True)`.
const MINIMAL_FIELDS: [Field; 5] = [
    Field::JobId,
    Field::Status,
    Field::TotalTasks,
    Field::RemainedTasks,
    Field::DataSourceId,
];

pub(crate) enum Projection<'a> {
    Full,
    Minimal,
    /// Only these fields were loaded; the others show model defaults.
    Only(&'a [Field]),
}

pub(crate) fn job_info(r: &Rec, projection: &Projection<'_>) -> Value {
    let mut m = Map::new();
    let loaded = |f: Field| match projection {
        Projection::Full => true,
        Projection::Minimal => MINIMAL_FIELDS.contains(&f),
        Projection::Only(fields) => fields.contains(&f),
    };
    for f in INFO_FIELDS {
        if matches!(projection, Projection::Minimal) && !MINIMAL_FIELDS.contains(&f) {
            continue;
        }
        let name = f.name().to_string();
        if !loaded(f) {
            // Model default of a field that was not loaded.
            if f == Field::Status {
                m.insert(name, Value::from("IN_PROGRESS"));
            }
            continue;
        }
        let str_field = |s: &str| (!s.is_empty()).then(|| Value::from(s));
        let time = |ms: i64| (ms != NO_TIME).then(|| Value::from(render_info(ms)));
        let v = match f {
            Field::JobId => str_field(&r.job_id),
            Field::Status => Some(Value::from(r.status.as_str())),
            Field::ErrorCode => r.error_code.as_deref().and_then(str_field),
            Field::ErrorMessage => r.error_message.as_deref().and_then(str_field),
            Field::TotalTasks => (r.total != 0).then(|| Value::from(r.total)),
            Field::RemainedTasks => (r.remained != 0).then(|| Value::from(r.remained)),
            Field::DataSourceId => str_field(&r.data_source),
            Field::DomainId => str_field(&r.domain),
            Field::CreatedAt => time(r.created),
            Field::UpdatedAt => time(r.updated),
            Field::FinishedAt => time(r.finished),
            Field::LastChangedAt => time(r.last_changed),
            Field::Options => None,
        };
        if let Some(v) = v {
            m.insert(name, v);
        }
    }
    Value::Object(m)
}

/// JobInfo of a plain job record.
pub fn job_info_of(job: &Job) -> Value {
    let mut index = crate::index::Index::new();
    let (ns, id) = (job.namespace.clone(), job.job_id.clone());
    index.upsert(job.clone());
    index
        .rec(&ns, &id)
        .map_or(Value::Null, |r| job_info(r, &Projection::Full))
}
