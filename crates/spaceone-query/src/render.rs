//! JobInfo in proto3 JSON, as SpaceONE's REST gateway prints it: field-number order, default values
//! (empty strings, zeros) left out, enums by name, datetimes as `2022-04-02T09:17:44.031Z`.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::model::{Field, Job};
use crate::record::{NO_TIME, Record};
use crate::slots::Slots;
use crate::time::{Millis, render_info};

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

/// One JobInfo's fields, for an answer form that is not JSON (protobuf): projected as the JSON
/// form is, so a field that was not loaded has its default (`status` then reads `IN_PROGRESS`, the
/// model's default), and the datetimes are milliseconds, `None` when unset ([`info_time`] gives
/// their text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoFields<'a> {
    pub job_id: &'a str,
    pub status: &'static str,
    pub error_code: &'a str,
    pub error_message: &'a str,
    pub total_tasks: i64,
    pub remained_tasks: i64,
    pub data_source_id: &'a str,
    pub domain_id: &'a str,
    pub created_at: Option<Millis>,
    pub updated_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub last_changed_at: Option<Millis>,
}

impl<'a> InfoFields<'a> {
    pub(crate) fn of(r: &'a Record, projection: &Projection<'_>) -> Self {
        let loaded = |f: Field| match projection {
            Projection::Full => true,
            Projection::Minimal => MINIMAL_FIELDS.contains(&f),
            Projection::Only(fields) => fields.contains(&f),
        };
        let text = |f: Field, s: &'a str| if loaded(f) { s } else { "" };
        let number = |f: Field, n: i64| if loaded(f) { n } else { 0 };
        let time = |f: Field, ms: Millis| (loaded(f) && ms != NO_TIME).then_some(ms);
        InfoFields {
            job_id: text(Field::JobId, &r.job_id),
            status: if loaded(Field::Status) {
                r.status.as_str()
            } else {
                crate::model::JobStatus::InProgress.as_str()
            },
            error_code: text(Field::ErrorCode, r.error_code.as_deref().unwrap_or("")),
            error_message: text(
                Field::ErrorMessage,
                r.error_message.as_deref().unwrap_or(""),
            ),
            total_tasks: number(Field::TotalTasks, r.total),
            remained_tasks: number(Field::RemainedTasks, r.remained),
            data_source_id: text(Field::DataSourceId, &r.data_source),
            domain_id: text(Field::DomainId, &r.domain),
            created_at: time(Field::CreatedAt, r.created),
            updated_at: time(Field::UpdatedAt, r.updated),
            finished_at: time(Field::FinishedAt, r.finished),
            last_changed_at: time(Field::LastChangedAt, r.last_changed),
        }
    }
}

/// A JobInfo datetime as SpaceONE prints it (`2022-04-02T09:17:44.031Z`).
pub fn info_time(ms: Millis) -> String {
    let mut buf = [0u8; 24];
    match crate::time::write_info(ms, &mut buf) {
        Some(s) => s.to_owned(),
        None => render_info(ms),
    }
}

/// One JobInfo, serialized straight from the record (no intermediate `Value`): the fields of
/// [`InfoFields`] in field-number order, default values left out.
pub(crate) struct Info<'a> {
    pub rec: &'a Record,
    pub projection: &'a Projection<'a>,
}

impl Serialize for Info<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let f = InfoFields::of(self.rec, self.projection);
        let mut m = serializer.serialize_map(None)?;
        put_str(&mut m, Field::JobId.name(), f.job_id)?;
        m.serialize_entry(Field::Status.name(), f.status)?;
        put_str(&mut m, Field::ErrorCode.name(), f.error_code)?;
        put_str(&mut m, Field::ErrorMessage.name(), f.error_message)?;
        put_int(&mut m, Field::TotalTasks.name(), f.total_tasks)?;
        put_int(&mut m, Field::RemainedTasks.name(), f.remained_tasks)?;
        put_str(&mut m, Field::DataSourceId.name(), f.data_source_id)?;
        put_str(&mut m, Field::DomainId.name(), f.domain_id)?;
        put_time(&mut m, Field::CreatedAt.name(), f.created_at)?;
        put_time(&mut m, Field::UpdatedAt.name(), f.updated_at)?;
        put_time(&mut m, Field::FinishedAt.name(), f.finished_at)?;
        put_time(&mut m, Field::LastChangedAt.name(), f.last_changed_at)?;
        m.end()
    }
}

/// proto3 JSON leaves zeros out.
fn put_int<M: SerializeMap>(m: &mut M, name: &str, n: i64) -> Result<(), M::Error> {
    if n == 0 {
        return Ok(());
    }
    m.serialize_entry(name, &n)
}

/// proto3 JSON leaves empty strings out.
fn put_str<M: SerializeMap>(m: &mut M, name: &str, s: &str) -> Result<(), M::Error> {
    if s.is_empty() {
        return Ok(());
    }
    m.serialize_entry(name, s)
}

fn put_time<M: SerializeMap>(m: &mut M, name: &str, ms: Option<Millis>) -> Result<(), M::Error> {
    let Some(ms) = ms else { return Ok(()) };
    let mut buf = [0u8; 24];
    match crate::time::write_info(ms, &mut buf) {
        Some(s) => m.serialize_entry(name, s),
        None => m.serialize_entry(name, &render_info(ms)),
    }
}

pub(crate) fn job_info(r: &Record, projection: &Projection<'_>) -> Value {
    serde_json::to_value(Info { rec: r, projection }).unwrap_or(Value::Null)
}

/// JobsInfo as the REST surfaces answer it: `results` (possibly `[]`) and `total_count` (possibly
/// `0`) are always there, so a JSON client can index them without a key check (spec, Corrections).
/// The JobInfo objects inside keep leaving out default-valued fields.
pub struct JobsInfo<'a> {
    pub(crate) rows: &'a [&'a Record],
    pub(crate) total: usize,
    pub(crate) projection: &'a Projection<'a>,
}

impl<'a> JobsInfo<'a> {
    /// How many jobs matched (`total_count`), not only those of the page.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The page's JobInfos, as [`InfoFields`].
    pub fn infos(&self) -> impl Iterator<Item = InfoFields<'a>> + '_ {
        self.rows.iter().map(|r| InfoFields::of(r, self.projection))
    }
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
