//! The stored form of a job: one compact record per job, and the scope a caller may see. Low-
//! cardinality strings (namespace, domain, data source, error code) are shared copies from the
//! index; timestamps are milliseconds with a sentinel for "none"; `options` is kept as compact
//! JSON text, only when a job has any, and parsed when a query reads it.

use std::sync::Arc;

use serde_json::Map;

use crate::model::{Field, FieldPath, Job, JobStatus};
use crate::time::{Millis, from_millis};
use crate::value::Bson;

pub(crate) const NO_TIME: Millis = i64::MIN;

#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub ns: Arc<str>,
    pub job_id: Arc<str>,
    pub status: JobStatus,
    pub error_code: Option<Arc<str>>,
    pub error_message: Option<Box<str>>,
    pub total: i64,
    pub remained: i64,
    pub data_source: Arc<str>,
    pub domain: Arc<str>,
    /// Compact JSON text. A parsed tree of a realistic 1.5 KB object took about 9 KB (a value, a
    /// key string and a string allocation per entry), the bulk of a replica's memory, while most
    /// calls never look inside options; a query that does parses each record it reads them from.
    pub options: Option<Box<str>>,
    pub created: Millis,
    pub updated: Millis,
    pub finished: Millis,
    pub last_changed: Millis,
}

/// Shared status strings, so reading a record's status allocates nothing.
fn status_str(s: JobStatus) -> Arc<str> {
    static STRS: std::sync::OnceLock<[Arc<str>; 5]> = std::sync::OnceLock::new();
    let strs = STRS.get_or_init(|| JobStatus::ALL.map(|s| Arc::from(s.as_str())));
    strs.get(s as usize)
        .cloned()
        .unwrap_or_else(|| Arc::from(s.as_str()))
}

fn time(ms: Millis) -> Bson {
    if ms == NO_TIME {
        Bson::Null
    } else {
        Bson::Date(ms)
    }
}

impl Record {
    /// The stored value of a model field. Nullable fields are stored as explicit nulls.
    pub fn field(&self, f: Field) -> Bson {
        match f {
            Field::JobId => Bson::Str(self.job_id.clone()),
            Field::Status => Bson::Str(status_str(self.status)),
            Field::ErrorCode => self.error_code.clone().map_or(Bson::Null, Bson::Str),
            Field::ErrorMessage => self.error_message.as_deref().map_or(Bson::Null, Bson::str),
            Field::TotalTasks => Bson::Int(self.total),
            Field::RemainedTasks => Bson::Int(self.remained),
            Field::DataSourceId => Bson::Str(self.data_source.clone()),
            Field::DomainId => Bson::Str(self.domain.clone()),
            Field::Options => self.options_val().unwrap_or(Bson::Obj(Vec::new())),
            Field::CreatedAt => time(self.created),
            Field::UpdatedAt => time(self.updated),
            Field::FinishedAt => time(self.finished),
            Field::LastChangedAt => time(self.last_changed),
        }
    }

    pub fn get(&self, path: &FieldPath) -> Bson {
        if path.sub.is_empty() {
            return self.field(path.field);
        }
        match self.options_val() {
            Some(o) => o.path(&path.sub),
            None => Bson::Missing,
        }
    }

    /// The options as a value, as they were before the record kept them as text.
    fn options_val(&self) -> Option<Bson> {
        let text = self.options.as_deref()?;
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|v| Bson::from_json(&v))
    }

    /// The whole stored document, in the model's field order.
    pub fn document(&self) -> Bson {
        Bson::Obj(
            Field::ALL
                .iter()
                .map(|f| (Arc::from(f.name()), self.field(*f)))
                .collect(),
        )
    }

    /// Stand-in for MongoDB's `_id` order (insertion order): creation time, then identity.
    pub fn natural_cmp(&self, other: &Record) -> std::cmp::Ordering {
        self.created
            .cmp(&other.created)
            .then_with(|| self.ns.cmp(&other.ns))
            .then_with(|| self.job_id.cmp(&other.job_id))
    }

    pub fn to_job(&self) -> Job {
        let opt = |ms: Millis| if ms == NO_TIME { None } else { from_millis(ms) };
        Job {
            namespace: self.ns.to_string(),
            job_id: self.job_id.to_string(),
            status: self.status,
            error_code: self.error_code.as_deref().map(str::to_string),
            error_message: self.error_message.as_deref().map(str::to_string),
            total_tasks: self.total,
            remained_tasks: self.remained,
            data_source_id: self.data_source.to_string(),
            domain_id: self.domain.to_string(),
            options: self.raw_options(),
            created_at: opt(self.created),
            updated_at: opt(self.updated),
            finished_at: opt(self.finished),
            last_changed_at: opt(self.last_changed),
        }
    }

    fn raw_options(&self) -> Map<String, serde_json::Value> {
        self.options
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

/// Who may be seen at all: evaluated before anything else, so nothing outside it can leak through
/// list, stat, keyword, distinct or counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub namespace: Option<String>,
    /// `None`: every domain.
    pub domains: Option<Vec<String>>,
}

impl Scope {
    pub fn all() -> Scope {
        Scope::default()
    }

    #[inline]
    pub(crate) fn admits(&self, r: &Record) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == r.ns.as_ref())
            && self
                .domains
                .as_ref()
                .is_none_or(|ds| ds.iter().any(|d| d.as_str() == r.domain.as_ref()))
    }
}
