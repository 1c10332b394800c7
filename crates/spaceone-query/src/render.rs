//! An Info message (JobInfo, JobTaskInfo) in proto3 JSON, as SpaceONE's REST gateway prints it:
//! the table's Info fields in field-number order, default values (empty strings, zeros) left out,
//! enums by name, datetimes as `2022-04-02T09:17:44.031Z`, a Struct as its object.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use std::sync::OnceLock;

use crate::model::JOB;
use crate::record::{NO_TIME, Record};
use crate::schema::{Column, Field, Resource, Schema};
use crate::slots::Slots;
use crate::time::{Millis, render_info};

pub(crate) enum Projection<'a> {
    Full,
    /// `Info(minimal=True)`: the table's minimal fields.
    Minimal,
    /// Only these fields were loaded; the others show model defaults.
    Only(&'a [Field]),
}

impl Projection<'_> {
    #[inline]
    fn loaded(&self, f: Field) -> bool {
        match self {
            Projection::Full => true,
            Projection::Minimal => f.def().minimal,
            Projection::Only(fields) => fields.contains(&f),
        }
    }
}

/// One Info field's value as the message carries it, projected: a field that was not loaded has
/// its model default (a status then reads the model's default state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoValue<'a> {
    /// A string ("": unset).
    Str(&'a str),
    /// An enum, by name.
    Enum(&'static str),
    /// A number (0: unset).
    Int(i64),
    /// A datetime in milliseconds ([`info_time`] gives its text; `None`: unset).
    Time(Option<Millis>),
    /// A Struct, as compact JSON text (`None`: unset, as in a minimal Info).
    Struct(Option<&'a str>),
}

fn info_value<'a>(r: &'a Record, f: Field, projection: &Projection<'_>) -> InfoValue<'a> {
    let loaded = projection.loaded(f);
    let text = |s: &'a str| InfoValue::Str(if loaded { s } else { "" });
    let time = |ms: Millis| InfoValue::Time((loaded && ms != NO_TIME).then_some(ms));
    match f.column() {
        Column::Id => text(&r.id),
        Column::Status(s) => InfoValue::Enum(s.name(if loaded { r.status } else { s.default })),
        Column::Domain => text(&r.domain),
        Column::Interned(k) => text(r.str_at(k).map_or("", |s| s)),
        Column::Text => text(r.text.as_deref().unwrap_or("")),
        Column::Int(k) => InfoValue::Int(if loaded { r.num(k) } else { 0 }),
        Column::Created => time(r.created),
        Column::Time(k) => time(r.num(k)),
        // The seed always sets the Struct (to the model's `{}` when not loaded), except in a
        // minimal Info.
        Column::Options => InfoValue::Struct(match projection {
            Projection::Minimal => None,
            _ if loaded => Some(r.options.as_deref().unwrap_or("{}")),
            _ => Some("{}"),
        }),
    }
}

/// One Info's fields in field-number order, for an answer form that is not JSON (protobuf).
#[derive(Clone, Copy)]
pub struct InfoRow<'a> {
    rec: &'a Record,
    schema: &'static Schema,
    projection: &'a Projection<'a>,
}

impl<'a> InfoRow<'a> {
    /// The resource the row is of.
    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// The Info message's fields (the table's field numbers say where each goes) and values.
    pub fn values(&self) -> impl Iterator<Item = (Field, InfoValue<'a>)> + '_ {
        self.schema
            .info_fields()
            .map(|f| (f, info_value(self.rec, f, self.projection)))
    }
}

/// The same Info in proto3 JSON (what [`Info`] writes), for an answer form that is JSON.
impl Serialize for InfoRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Info {
            rec: self.rec,
            schema: self.schema,
            projection: self.projection,
        }
        .serialize(serializer)
    }
}

/// One JobInfo's fields, for the Job's protobuf answer: projected as the JSON form is, so a field
/// that was not loaded has its default (`status` then reads `IN_PROGRESS`, the model's default),
/// and the datetimes are milliseconds, `None` when unset ([`info_time`] gives their text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
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

/// JobInfo's fields in [`InfoFields`] order, looked up in the Job's table once.
fn job_info_fields() -> Option<&'static [Field; 12]> {
    static FIELDS: OnceLock<Option<[Field; 12]>> = OnceLock::new();
    FIELDS
        .get_or_init(|| {
            let names = [
                "job_id",
                "status",
                "error_code",
                "error_message",
                "total_tasks",
                "remained_tasks",
                "data_source_id",
                "domain_id",
                "created_at",
                "updated_at",
                "finished_at",
                "last_changed_at",
            ];
            let fields: Option<Vec<Field>> = names.iter().map(|n| JOB.field(n)).collect();
            fields?.try_into().ok()
        })
        .as_ref()
}

impl<'a> InfoFields<'a> {
    fn of(row: &InfoRow<'a>) -> Self {
        let Some(fields) = job_info_fields().filter(|_| std::ptr::eq(row.schema, &JOB)) else {
            return InfoFields::default();
        };
        let [
            id,
            status,
            code,
            message,
            total,
            remained,
            source,
            domain,
            c,
            u,
            f,
            l,
        ] = fields;
        let value = |f: &Field| info_value(row.rec, *f, row.projection);
        let text = |f: &Field| match value(f) {
            InfoValue::Str(s) => s,
            _ => "",
        };
        let number = |f: &Field| match value(f) {
            InfoValue::Int(n) => n,
            _ => 0,
        };
        let time = |f: &Field| match value(f) {
            InfoValue::Time(t) => t,
            _ => None,
        };
        InfoFields {
            job_id: text(id),
            status: match value(status) {
                InfoValue::Enum(s) => s,
                _ => "",
            },
            error_code: text(code),
            error_message: text(message),
            total_tasks: number(total),
            remained_tasks: number(remained),
            data_source_id: text(source),
            domain_id: text(domain),
            created_at: time(c),
            updated_at: time(u),
            finished_at: time(f),
            last_changed_at: time(l),
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

/// One Info, serialized straight from the record (no intermediate `Value`): the table's Info
/// fields in field-number order, default values left out.
pub(crate) struct Info<'a> {
    pub rec: &'a Record,
    pub schema: &'static Schema,
    pub projection: &'a Projection<'a>,
}

impl Serialize for Info<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(None)?;
        for f in self.schema.info_fields() {
            let name = f.name();
            match info_value(self.rec, f, self.projection) {
                InfoValue::Str(s) => put_str(&mut m, name, s)?,
                InfoValue::Enum(s) => m.serialize_entry(name, s)?,
                InfoValue::Int(n) => put_int(&mut m, name, n)?,
                InfoValue::Time(t) => put_time(&mut m, name, t)?,
                InfoValue::Struct(None) => {}
                InfoValue::Struct(Some(text)) => {
                    let v: Value = serde_json::from_str(text).unwrap_or_default();
                    m.serialize_entry(name, &struct_numbers(v))?;
                }
            }
        }
        m.end()
    }
}

/// A Struct holds every number as a double, printed without a fraction when it has none
/// (`retries: 0`, `ratio: 0.25`).
fn struct_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                // Integral and within ±2^53: exactly an i64.
                #[allow(clippy::cast_possible_truncation)]
                Value::from(f as i64)
            } else {
                Value::Number(n)
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(struct_numbers).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, struct_numbers(v))).collect())
        }
        other => other,
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

pub(crate) fn info(r: &Record, schema: &'static Schema, projection: &Projection<'_>) -> Value {
    serde_json::to_value(Info {
        rec: r,
        schema,
        projection,
    })
    .unwrap_or(Value::Null)
}

/// A list's answer (JobsInfo, JobTasksInfo) as the REST surfaces answer it: `results` (possibly
/// `[]`) and `total_count` (possibly `0`) are always there, so a JSON client can index them
/// without a key check (spec, Corrections). The Info objects inside keep leaving out
/// default-valued fields.
pub struct JobsInfo<'a> {
    pub(crate) rows: &'a [&'a Record],
    pub(crate) total: usize,
    pub(crate) schema: &'static Schema,
    pub(crate) projection: &'a Projection<'a>,
}

impl<'a> JobsInfo<'a> {
    /// How many records matched (`total_count`), not only those of the page.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The resource the rows are of.
    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// The page's Infos, field by field (any resource).
    pub fn rows(&self) -> impl Iterator<Item = InfoRow<'a>> + '_ {
        self.rows.iter().map(|r| InfoRow {
            rec: r,
            schema: self.schema,
            projection: self.projection,
        })
    }

    /// The page's JobInfos, as [`InfoFields`] (a page of jobs).
    pub fn infos(&self) -> impl Iterator<Item = InfoFields<'a>> + '_ {
        self.rows().map(|row| InfoFields::of(&row))
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
                schema: self.schema,
                projection: self.projection,
            })
            .collect();
        m.serialize_entry("results", &rows)?;
        m.serialize_entry("total_count", &self.total)?;
        m.end()
    }
}

/// `f` of the Info row of a plain record (all its fields), in whatever form `f` makes of it.
pub(crate) fn with_info_row<R: Resource + Clone, T>(
    record: &R,
    f: impl FnOnce(&InfoRow<'_>) -> T,
) -> Option<T> {
    let schema = R::schema();
    let mut index = Slots::new(schema);
    let columns = record.clone().into_columns();
    let (ns, id) = (columns.namespace.clone(), columns.id.clone());
    index.upsert(columns);
    let rec = index.rec(&ns, &id)?;
    Some(f(&InfoRow {
        rec,
        schema,
        projection: &Projection::Full,
    }))
}

/// One Info row of a record the index holds.
pub(crate) fn row<'a>(
    rec: &'a Record,
    schema: &'static Schema,
    projection: &'a Projection<'a>,
) -> InfoRow<'a> {
    InfoRow {
        rec,
        schema,
        projection,
    }
}

/// The Info of a plain record (JobInfo of a Job, JobTaskInfo of a JobTask).
pub fn info_of<R: Resource + Clone>(record: &R) -> Value {
    with_info_row(record, |row| {
        serde_json::to_value(row).unwrap_or(Value::Null)
    })
    .unwrap_or(Value::Null)
}
