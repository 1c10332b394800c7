//! JobInfo in proto3 JSON, as SpaceONE's REST gateway prints it: field-number order, default values
//! (empty strings, zeros) left out, enums by name, datetimes as `2022-04-02T09:17:44.031Z`.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::model::{Field, Job};
use crate::record::{NO_TIME, Rec};
use crate::slots::Slots;
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

/// One JobInfo, serialized straight from the record (no intermediate `Value`).
pub(crate) struct Info<'a> {
    pub rec: &'a Rec,
    pub projection: &'a Projection<'a>,
}

impl Serialize for Info<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (r, projection) = (self.rec, self.projection);
        let mut m = serializer.serialize_map(None)?;
        let loaded = |f: Field| match projection {
            Projection::Full => true,
            Projection::Minimal => MINIMAL_FIELDS.contains(&f),
            Projection::Only(fields) => fields.contains(&f),
        };
        for f in INFO_FIELDS {
            if matches!(projection, Projection::Minimal) && !MINIMAL_FIELDS.contains(&f) {
                continue;
            }
            let name = f.name();
            if !loaded(f) {
                // Model default of a field that was not loaded.
                if f == Field::Status {
                    m.serialize_entry(name, "IN_PROGRESS")?;
                }
                continue;
            }
            match f {
                Field::JobId => put_str(&mut m, name, &r.job_id)?,
                Field::Status => m.serialize_entry(name, r.status.as_str())?,
                Field::ErrorCode => put_str(&mut m, name, r.error_code.as_deref().unwrap_or(""))?,
                Field::ErrorMessage => {
                    put_str(&mut m, name, r.error_message.as_deref().unwrap_or(""))?;
                }
                Field::TotalTasks if r.total != 0 => m.serialize_entry(name, &r.total)?,
                Field::RemainedTasks if r.remained != 0 => {
                    m.serialize_entry(name, &r.remained)?;
                }
                Field::DataSourceId => put_str(&mut m, name, &r.data_source)?,
                Field::DomainId => put_str(&mut m, name, &r.domain)?,
                Field::CreatedAt => put_time(&mut m, name, r.created)?,
                Field::UpdatedAt => put_time(&mut m, name, r.updated)?,
                Field::FinishedAt => put_time(&mut m, name, r.finished)?,
                Field::LastChangedAt => put_time(&mut m, name, r.last_changed)?,
                _ => {}
            }
        }
        m.end()
    }
}

/// proto3 JSON leaves empty strings out.
fn put_str<M: SerializeMap>(m: &mut M, name: &str, s: &str) -> Result<(), M::Error> {
    if s.is_empty() {
        return Ok(());
    }
    m.serialize_entry(name, s)
}

fn put_time<M: SerializeMap>(m: &mut M, name: &str, ms: i64) -> Result<(), M::Error> {
    if ms == NO_TIME {
        return Ok(());
    }
    let mut buf = [0u8; 24];
    match crate::time::write_info(ms, &mut buf) {
        Some(s) => m.serialize_entry(name, s),
        None => m.serialize_entry(name, &render_info(ms)),
    }
}

pub(crate) fn job_info(r: &Rec, projection: &Projection<'_>) -> Value {
    serde_json::to_value(Info { rec: r, projection }).unwrap_or(Value::Null)
}

/// JobsInfo as the REST surfaces answer it: `results` (possibly `[]`) and `total_count` (possibly
/// `0`) are always there, so a JSON client can index them without a key check (spec, Corrections).
/// The JobInfo objects inside keep leaving out default-valued fields.
pub(crate) struct JobsInfo<'a> {
    pub rows: &'a [&'a Rec],
    pub total: usize,
    pub projection: &'a Projection<'a>,
}

impl Serialize for JobsInfo<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(2))?;
        let rows: Vec<Info<'_>> = self
            .rows
            .iter()
            .map(|rec| Info {
                rec,
                projection: self.projection,
            })
            .collect();
        m.serialize_entry("results", &rows)?;
        m.serialize_entry("total_count", &self.total)?;
        m.end()
    }
}

/// JobInfo of a plain job record.
pub fn job_info_of(job: &Job) -> Value {
    let mut index = Slots::default();
    let (ns, id) = (job.namespace.clone(), job.job_id.clone());
    index.upsert(job.clone());
    index
        .rec(&ns, &id)
        .map_or(Value::Null, |r| job_info(r, &Projection::Full))
}
