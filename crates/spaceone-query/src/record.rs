//! The stored form of a record: one compact record per job or task, and the scope a caller may
//! see. Columns are the table's ([`crate::schema`]): low-cardinality strings (namespace, domain,
//! data source, error code) are shared copies from the index; timestamps are milliseconds with a
//! sentinel for "none"; `options` is kept as compact JSON text, only when a record has any, and
//! parsed when a query reads it.

use std::sync::Arc;

use serde_json::Map;

use crate::schema::{Column, Columns, Field, FieldPath, MAX_NUMS, MAX_STRS, Schema};
use crate::time::{Millis, from_millis};
use crate::value::Bson;

pub(crate) use crate::schema::NO_TIME;

#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub ns: Arc<str>,
    pub id: Arc<str>,
    pub domain: Arc<str>,
    pub strs: [Option<Arc<str>>; MAX_STRS],
    pub text: Option<Box<str>>,
    /// Compact JSON text. A parsed tree of a realistic 1.5 KB object took about 9 KB (a value, a
    /// key string and a string allocation per entry), the bulk of a replica's memory, while most
    /// calls never look inside options; a query that does parses each record it reads them from.
    pub options: Option<Box<str>>,
    pub nums: [i64; MAX_NUMS],
    pub created: Millis,
    pub status: u8,
}

fn time(ms: Millis) -> Bson {
    if ms == NO_TIME {
        Bson::Null
    } else {
        Bson::Date(ms)
    }
}

impl Record {
    #[inline]
    pub fn num(&self, k: usize) -> i64 {
        self.nums.get(k).copied().unwrap_or(NO_TIME)
    }

    #[inline]
    pub fn str_at(&self, k: usize) -> Option<&Arc<str>> {
        self.strs.get(k).and_then(Option::as_ref)
    }

    /// The stored value of a model field. Nullable fields are stored as explicit nulls.
    pub fn field(&self, f: Field) -> Bson {
        match f.column() {
            Column::Id => Bson::Str(self.id.clone()),
            Column::Status(s) => Bson::Str(s.shared(self.status)),
            Column::Domain => Bson::Str(self.domain.clone()),
            Column::Interned(k) => self.str_at(k).cloned().map_or(Bson::Null, Bson::Str),
            Column::Text => self.text.as_deref().map_or(Bson::Null, Bson::str),
            Column::Int(k) => Bson::Int(self.nums.get(k).copied().unwrap_or(0)),
            Column::Created => time(self.created),
            Column::Time(k) => time(self.num(k)),
            Column::Options => self.options_val().unwrap_or(Bson::Obj(Vec::new())),
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
    pub fn document(&self, schema: &'static Schema) -> Bson {
        Bson::Obj(
            schema
                .all()
                .map(|f| (Arc::from(f.name()), self.field(f)))
                .collect(),
        )
    }

    /// Stand-in for MongoDB's `_id` order (insertion order): creation time, then identity.
    pub fn natural_cmp(&self, other: &Record) -> std::cmp::Ordering {
        self.created
            .cmp(&other.created)
            .then_with(|| self.ns.cmp(&other.ns))
            .then_with(|| self.id.cmp(&other.id))
    }

    /// The record as plain data.
    pub fn to_columns(&self) -> Columns {
        Columns {
            namespace: self.ns.to_string(),
            id: self.id.to_string(),
            domain: self.domain.to_string(),
            status: self.status,
            strs: self.strs.clone().map(|s| s.as_deref().map(str::to_string)),
            text: self.text.as_deref().map(str::to_string),
            nums: self.nums,
            created: if self.created == NO_TIME {
                None
            } else {
                from_millis(self.created)
            },
            options: self.raw_options(),
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
