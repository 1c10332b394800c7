//! One table per resource: for each field of a SpaceONE model, its name, its mongoengine type, where
//! a stored record keeps it, whether it is in the minimal set, whether it has a posting list, and
//! its field number in the Info message. Parsing field names, the index's storage and posting
//! lists, and proto3-JSON rendering all read the table; a resource is its table ([`Schema`]) plus
//! the conversion of its plain record type to and from [`Columns`] ([`Resource`]).

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::time::{Millis, from_millis, to_millis};

/// Shared interned-string columns a record has (`Column::Interned(0..MAX_STRS)`).
pub const MAX_STRS: usize = 3;
/// Number columns a record has (`Column::Int` and `Column::Time`, `0..MAX_NUMS`).
pub const MAX_NUMS: usize = 5;
/// Interned columns that may have posting lists: `Column::Interned(0..MAX_POSTED)`.
pub const MAX_POSTED: usize = 2;

/// "None" for a stored time.
pub(crate) const NO_TIME: Millis = i64::MIN;

/// A field's mongoengine type (how a filter value is coerced, how the OpenAPI schema types it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Str,
    Int,
    Date,
    Dict,
}

/// A status enum: the values the model stores (by ordinal) and the names the API's enum accepts.
#[derive(Debug)]
pub struct Statuses {
    /// The model's choices, in the order of the stored ordinal.
    pub stored: &'static [&'static str],
    /// The API enum's values (SCOPE_NONE left out): a list parameter may name any of them.
    pub api: &'static [&'static str],
    /// The ordinal of the model's default (what a field left out of `only` reads).
    pub default: u8,
    shared: OnceLock<Vec<Arc<str>>>,
}

impl Statuses {
    pub const fn new(
        stored: &'static [&'static str],
        api: &'static [&'static str],
        default: u8,
    ) -> Statuses {
        Statuses {
            stored,
            api,
            default,
            shared: OnceLock::new(),
        }
    }

    /// The name of a stored ordinal.
    pub fn name(&self, ordinal: u8) -> &'static str {
        self.stored.get(usize::from(ordinal)).copied().unwrap_or("")
    }

    /// The stored ordinal of a name.
    pub fn ordinal(&self, name: &str) -> Option<u8> {
        let i = self.stored.iter().position(|s| *s == name)?;
        u8::try_from(i).ok()
    }

    /// The stored ordinals whose name `admits`, as a bit set (bit `i`: ordinal `i`).
    pub(crate) fn mask(&self, admits: impl Fn(&str) -> bool) -> u32 {
        self.stored
            .iter()
            .enumerate()
            .filter(|(_, name)| admits(name))
            .fold(0, |m, (i, _)| {
                m | u32::try_from(i)
                    .ok()
                    .and_then(|i| 1u32.checked_shl(i))
                    .unwrap_or(0)
            })
    }

    /// A shared copy of a stored name, so reading a record's status allocates nothing.
    pub(crate) fn shared(&self, ordinal: u8) -> Arc<str> {
        let all = self
            .shared
            .get_or_init(|| self.stored.iter().map(|s| Arc::from(*s)).collect());
        all.get(usize::from(ordinal))
            .cloned()
            .unwrap_or_else(|| Arc::from(self.name(ordinal)))
    }
}

/// Where a stored record keeps a field (and so its type).
#[derive(Clone, Copy, Debug)]
pub enum Column {
    /// The record's id (the resource's key, never null).
    Id,
    /// The status enum, stored as its ordinal.
    Status(&'static Statuses),
    /// The domain: interned, never null; every call is scoped by it.
    Domain,
    /// An interned string (`Columns::strs[k]`), null when absent.
    Interned(usize),
    /// A free text (error messages), null when absent.
    Text,
    /// A count (`Columns::nums[k]`).
    Int(usize),
    /// The creation time: the default order and the index's creation orders.
    Created,
    /// A datetime (`Columns::nums[k]`, milliseconds), null when absent.
    Time(usize),
    /// The free-form object, kept as compact JSON text.
    Options,
}

/// One field of a resource's table.
#[derive(Debug)]
pub struct FieldDef {
    pub name: &'static str,
    pub column: Column,
    /// In the model's `minimal_fields`.
    pub minimal: bool,
    /// An interned field with a posting list (and a creation order per value within a domain):
    /// `eq` on it visits only its records.
    pub posted: bool,
    /// A parameter of the list call (`append_query_filter`).
    pub param: bool,
    /// Its field number in the Info message (`None`: the model has it, the message does not).
    pub info: Option<u32>,
}

impl FieldDef {
    pub fn ty(&self) -> FieldType {
        match self.column {
            Column::Int(_) => FieldType::Int,
            Column::Created | Column::Time(_) => FieldType::Date,
            Column::Options => FieldType::Dict,
            _ => FieldType::Str,
        }
    }
}

/// A field of one resource's table (compared by identity).
#[derive(Clone, Copy)]
pub struct Field(&'static FieldDef);

impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Field {}

impl std::hash::Hash for Field {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::ptr::hash(self.0, h);
    }
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl Field {
    pub fn name(self) -> &'static str {
        self.0.name
    }

    pub fn ty(self) -> FieldType {
        self.0.ty()
    }

    pub fn def(self) -> &'static FieldDef {
        self.0
    }

    #[inline]
    pub(crate) fn column(self) -> Column {
        self.0.column
    }

    /// The posting list an `eq` on this field can use: 1 for the domain, `2 + k` for a posted
    /// `Interned(k)`.
    #[inline]
    pub(crate) fn posting(self) -> Option<usize> {
        match self.0.column {
            Column::Domain => Some(1),
            Column::Interned(k) if self.0.posted => k.checked_add(2),
            _ => None,
        }
    }

    /// An integer key to sort on (counts and datetimes).
    pub(crate) fn is_integer(self) -> bool {
        matches!(
            self.0.column,
            Column::Int(_) | Column::Created | Column::Time(_)
        )
    }
}

/// A resource: its name, its field table and its status enum.
#[derive(Debug)]
pub struct Schema {
    /// The SpaceONE resource ("Job", "JobTask").
    pub resource: &'static str,
    /// Every field, in the model's declaration order (the order raw documents show).
    pub fields: &'static [FieldDef],
    info_order: OnceLock<Vec<usize>>,
}

impl Schema {
    pub const fn new(resource: &'static str, fields: &'static [FieldDef]) -> Schema {
        Schema {
            resource,
            fields,
            info_order: OnceLock::new(),
        }
    }

    /// Every field, in declaration order.
    pub fn all(&'static self) -> impl Iterator<Item = Field> {
        self.fields.iter().map(Field)
    }

    pub fn field(&'static self, name: &str) -> Option<Field> {
        self.fields.iter().find(|f| f.name == name).map(Field)
    }

    /// The field kept in `column`'s place (the id, the domain, the status, the creation time).
    pub(crate) fn with_column(&'static self, want: fn(&Column) -> bool) -> Option<Field> {
        self.fields.iter().find(|f| want(&f.column)).map(Field)
    }

    /// The id field (`job_id`, `job_task_id`).
    pub fn id(&'static self) -> Option<Field> {
        self.with_column(|c| matches!(c, Column::Id))
    }

    /// The domain field (`domain_id`).
    pub fn domain(&'static self) -> Option<Field> {
        self.with_column(|c| matches!(c, Column::Domain))
    }

    /// The creation-time field (`created_at`).
    pub fn created(&'static self) -> Option<Field> {
        self.with_column(|c| matches!(c, Column::Created))
    }

    /// The status enum.
    pub fn statuses(&'static self) -> Option<&'static Statuses> {
        self.fields.iter().find_map(|f| match f.column {
            Column::Status(s) => Some(s),
            _ => None,
        })
    }

    /// The list call's parameters, in table order.
    pub fn params(&'static self) -> impl Iterator<Item = &'static str> {
        self.fields.iter().filter(|f| f.param).map(|f| f.name)
    }

    /// The fields of the Info message, in field-number order.
    pub fn info_fields(&'static self) -> impl Iterator<Item = Field> {
        let order = self.info_order.get_or_init(|| {
            let mut order: Vec<(u32, usize)> = self
                .fields
                .iter()
                .enumerate()
                .filter_map(|(i, f)| Some((f.info?, i)))
                .collect();
            order.sort_unstable();
            order.into_iter().map(|(_, i)| i).collect()
        });
        order.iter().filter_map(|i| self.fields.get(*i)).map(Field)
    }
}

/// A key as a query names it: a model field plus, for a dict field, a dotted sub-path.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldPath {
    pub field: Field,
    pub sub: Vec<String>,
}

impl FieldPath {
    /// Resolves a key; unknown fields are mongoengine's `Cannot resolve field "x"`.
    pub fn resolve(schema: &'static Schema, key: &str) -> Result<FieldPath, String> {
        let mut parts = key.split('.');
        let head = parts.next().unwrap_or_default();
        let field = schema
            .field(head)
            .ok_or_else(|| format!("Cannot resolve field \"{head}\""))?;
        let sub: Vec<String> = parts.map(str::to_string).collect();
        if !sub.is_empty() && field.ty() != FieldType::Dict {
            let first = sub.first().map_or("", String::as_str);
            return Err(format!("Cannot resolve field \"{first}\""));
        }
        Ok(FieldPath { field, sub })
    }
}

/// A record in the shape the index stores it, as plain data: what a [`Resource`]'s record type
/// converts to and from. Which field sits in which column is its table's word.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Columns {
    /// Kubernetes namespace ("" for records read from a JSON file); not part of any Info.
    pub namespace: String,
    pub id: String,
    pub domain: String,
    /// The status's stored ordinal.
    pub status: u8,
    pub strs: [Option<String>; MAX_STRS],
    pub text: Option<String>,
    pub nums: [i64; MAX_NUMS],
    pub created: Option<DateTime<Utc>>,
    pub options: Map<String, Value>,
}

impl Columns {
    pub fn new(namespace: String, id: String, domain: String) -> Columns {
        Columns {
            namespace,
            id,
            domain,
            nums: [NO_TIME; MAX_NUMS],
            ..Columns::default()
        }
    }

    pub fn set_str(&mut self, k: usize, v: Option<String>) {
        if let Some(s) = self.strs.get_mut(k) {
            *s = v;
        }
    }

    pub fn take_str(&mut self, k: usize) -> Option<String> {
        self.strs.get_mut(k).and_then(Option::take)
    }

    pub fn set_int(&mut self, k: usize, n: i64) {
        if let Some(s) = self.nums.get_mut(k) {
            *s = n;
        }
    }

    pub fn int(&self, k: usize) -> i64 {
        self.nums.get(k).copied().unwrap_or(0)
    }

    pub fn set_time(&mut self, k: usize, t: Option<DateTime<Utc>>) {
        self.set_int(k, t.map_or(NO_TIME, to_millis));
    }

    pub fn time(&self, k: usize) -> Option<DateTime<Utc>> {
        match self.nums.get(k).copied() {
            None | Some(NO_TIME) => None,
            Some(ms) => from_millis(ms),
        }
    }
}

/// A resource's plain record type (what the operator builds from its custom resource and reads
/// back): its table, and its conversion to and from the stored shape.
pub trait Resource: Sized {
    /// Its table.
    fn schema() -> &'static Schema;
    fn into_columns(self) -> Columns;
    fn from_columns(columns: Columns) -> Self;
}
