//! Compact storage of job records. Low-cardinality strings (namespace, domain, data source, error
//! code) are interned and shared; timestamps are milliseconds with a sentinel for "none"; `options`
//! is kept as a parsed value only when a job has any. Records live in a slot vector addressed by
//! (namespace, job_id). Posting lists of slots per namespace, domain and data source let a call
//! that names one of them (every SpaceONE call names its domain) visit only those records.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Map;

use crate::filter::Filter;
use crate::limits::Budget;
use crate::model::{Field, FieldPath, Job, JobStatus};
use crate::time::{Millis, from_millis, to_millis};
use crate::value::Val;

pub(crate) const NO_TIME: Millis = i64::MIN;

#[derive(Clone, Debug)]
pub(crate) struct Rec {
    pub ns: Arc<str>,
    pub job_id: Arc<str>,
    pub status: JobStatus,
    pub error_code: Option<Arc<str>>,
    pub error_message: Option<Box<str>>,
    pub total: i64,
    pub remained: i64,
    pub data_source: Arc<str>,
    pub domain: Arc<str>,
    pub options: Option<Box<Val>>,
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

fn time(ms: Millis) -> Val {
    if ms == NO_TIME {
        Val::Null
    } else {
        Val::Date(ms)
    }
}

impl Rec {
    /// The stored value of a model field. Nullable fields are stored as explicit nulls.
    pub fn field(&self, f: Field) -> Val {
        match f {
            Field::JobId => Val::Str(self.job_id.clone()),
            Field::Status => Val::Str(status_str(self.status)),
            Field::ErrorCode => self.error_code.clone().map_or(Val::Null, Val::Str),
            Field::ErrorMessage => self.error_message.as_deref().map_or(Val::Null, Val::str),
            Field::TotalTasks => Val::Int(self.total),
            Field::RemainedTasks => Val::Int(self.remained),
            Field::DataSourceId => Val::Str(self.data_source.clone()),
            Field::DomainId => Val::Str(self.domain.clone()),
            Field::Options => self
                .options
                .as_deref()
                .cloned()
                .unwrap_or(Val::Obj(Vec::new())),
            Field::CreatedAt => time(self.created),
            Field::UpdatedAt => time(self.updated),
            Field::FinishedAt => time(self.finished),
            Field::LastChangedAt => time(self.last_changed),
        }
    }

    pub fn get(&self, path: &FieldPath) -> Val {
        if path.sub.is_empty() {
            return self.field(path.field);
        }
        let parts: Vec<&str> = path.sub.iter().map(String::as_str).collect();
        match self.options.as_deref() {
            Some(o) => o.path(&parts),
            None => Val::Missing,
        }
    }

    /// The whole stored document, in the model's field order.
    pub fn document(&self) -> Val {
        Val::Obj(
            Field::ALL
                .iter()
                .map(|f| (Arc::from(f.name()), self.field(*f)))
                .collect(),
        )
    }

    /// Stand-in for MongoDB's `_id` order (insertion order): creation time, then identity.
    pub fn natural_cmp(&self, other: &Rec) -> std::cmp::Ordering {
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
        fn back(v: &Val) -> serde_json::Value {
            match v {
                Val::Missing | Val::Null => serde_json::Value::Null,
                Val::Bool(b) => serde_json::Value::Bool(*b),
                Val::Int(i) => serde_json::Value::from(*i),
                Val::Float(f) => serde_json::Number::from_f64(*f)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                Val::Str(s) => serde_json::Value::String(s.to_string()),
                Val::Date(ms) => serde_json::Value::String(crate::time::render_info(*ms)),
                Val::Arr(a) => serde_json::Value::Array(a.iter().map(back).collect()),
                Val::Obj(o) => serde_json::Value::Object(
                    o.iter().map(|(k, v)| (k.to_string(), back(v))).collect(),
                ),
            }
        }
        match self.options.as_deref().map(back) {
            Some(serde_json::Value::Object(m)) => m,
            _ => Map::new(),
        }
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
    pub(crate) fn admits(&self, r: &Rec) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == r.ns.as_ref())
            && self
                .domains
                .as_ref()
                .is_none_or(|ds| ds.iter().any(|d| d.as_str() == r.domain.as_ref()))
    }
}

/// The fields with posting lists, in the order of `Index::postings` and `Index::positions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Posted {
    Namespace = 0,
    Domain = 1,
    DataSource = 2,
}

impl Posted {
    const ALL: [Posted; 3] = [Posted::Namespace, Posted::Domain, Posted::DataSource];

    fn of(self, r: &Rec) -> &Arc<str> {
        match self {
            Posted::Namespace => &r.ns,
            Posted::Domain => &r.domain,
            Posted::DataSource => &r.data_source,
        }
    }
}

#[derive(Default, Debug)]
pub struct Index {
    slots: Vec<Option<Rec>>,
    free: Vec<u32>,
    by_key: HashMap<(Arc<str>, Arc<str>), u32>,
    interned: HashSet<Arc<str>>,
    /// Per posted field: value -> the slots holding it (unordered).
    postings: [HashMap<Arc<str>, Vec<u32>>; 3],
    /// Per slot: where it sits in each of its posting lists, so removal is a swap_remove.
    positions: Vec<[u32; 3]>,
    /// Per slot: what most calls test and sort on, packed, so a scan reads 32 bytes per
    /// candidate instead of the whole record (all zero for a free slot).
    hot: Vec<Hot>,
    /// Per (domain, data source or 0 for all of the domain's): its slots by creation time. The
    /// most common call, a domain's or a data source's newest jobs a page at a time, reads a
    /// page's worth of these instead of scanning (keys are interned-string addresses).
    by_created: HashMap<(usize, usize), Created>,
}

/// Slots by creation time (`NO_TIME` first).
pub(crate) type Created = BTreeSet<(Millis, u32)>;

static NO_SLOTS: Created = BTreeSet::new();

#[derive(Clone, Copy, Debug, Default)]
struct Hot {
    /// Addresses of the interned strings (stable: interned strings are never freed).
    ns: usize,
    domain: usize,
    data_source: usize,
    created: Millis,
}

impl Hot {
    fn of(r: &Rec) -> Hot {
        Hot {
            ns: addr(&r.ns),
            domain: addr(&r.domain),
            data_source: addr(&r.data_source),
            created: r.created,
        }
    }
}

/// Whether two records sit at the same place in the creation orders.
fn same_order_keys(a: &Rec, b: &Rec) -> bool {
    a.created == b.created
        && Arc::ptr_eq(&a.domain, &b.domain)
        && Arc::ptr_eq(&a.data_source, &b.data_source)
}

/// Identity of an interned string.
fn addr(a: &Arc<str>) -> usize {
    Arc::as_ptr(a).cast::<u8>() as usize
}

/// How a call visits the index: which slots, tested first on their packed fields, then (for
/// the conditions left) on their records.
pub(crate) struct Plan<'a> {
    index: &'a Index,
    /// The shortest posting list every answer is in (`None`: visit every slot).
    slots: Option<&'a [u32]>,
    nothing: bool,
    ns: Option<usize>,
    domains: Option<Vec<usize>>,
    eqs: Vec<(Posted, usize)>,
    rest: Filter,
}

impl<'a> Plan<'a> {
    fn admits(&self, slot: u32) -> bool {
        let Some(h) = self.index.hot.get(slot as usize) else {
            return false;
        };
        if h.ns == 0
            || self.ns.is_some_and(|ns| ns != h.ns)
            || self
                .domains
                .as_ref()
                .is_some_and(|ds| !ds.contains(&h.domain))
        {
            return false;
        }
        for &(p, want) in &self.eqs {
            let have = match p {
                Posted::Namespace => h.ns,
                Posted::Domain => h.domain,
                Posted::DataSource => h.data_source,
            };
            if have != want {
                return false;
            }
        }
        self.rest.is_empty() || self.index.slot(slot).is_some_and(|r| self.rest.matches(r))
    }

    /// The admitted slots in creation order, when the plan admits exactly one domain's jobs (or
    /// one of its data sources') with no other condition.
    pub(crate) fn by_created(&self) -> Option<&'a Created> {
        if self.nothing || self.ns.is_some() || !self.rest.is_empty() {
            return None;
        }
        let mut domain = match self.domains.as_deref() {
            Some([d]) => Some(*d),
            Some(_) => return None,
            None => None,
        };
        let mut source = None;
        for &(p, a) in &self.eqs {
            let slot = match p {
                Posted::Domain => &mut domain,
                Posted::DataSource => &mut source,
                Posted::Namespace => return None,
            };
            if slot.is_some_and(|have| have != a) {
                // Two different values of one field: nothing matches; the scan says so.
                return None;
            }
            *slot = Some(a);
        }
        let key = (domain?, source.unwrap_or(0));
        Some(self.index.by_created.get(&key).unwrap_or(&NO_SLOTS))
    }

    /// The admitted slots. Each candidate visited counts against the budget's clock; the scan
    /// stops early once the time is up (the caller then asks [`Budget::check_time`]).
    pub(crate) fn into_slots<'b>(self, budget: &'b Budget<'_>) -> impl Iterator<Item = u32> + 'b
    where
        'a: 'b,
    {
        let cost = self.rest.cost();
        let every =
            (!self.nothing && self.slots.is_none()).then(|| 0..to_u32(self.index.slots.len()));
        let listed = self
            .slots
            .filter(|_| !self.nothing)
            .map(|s| s.iter().copied());
        every
            .into_iter()
            .flatten()
            .chain(listed.into_iter().flatten())
            .take_while(move |_| budget.tick(cost))
            .filter(move |&s| self.admits(s))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.interned.insert(a.clone());
        a
    }

    /// Inserts a job, or replaces the one with the same (namespace, job_id).
    pub fn upsert(&mut self, job: Job) {
        let ms = |t: Option<DateTime<Utc>>| t.map_or(NO_TIME, to_millis);
        let ns = self.intern(&job.namespace);
        let rec = Rec {
            job_id: Arc::from(job.job_id.as_str()),
            status: job.status,
            error_code: job.error_code.as_deref().map(|c| self.intern(c)),
            error_message: job.error_message.map(String::into_boxed_str),
            total: job.total_tasks,
            remained: job.remained_tasks,
            data_source: self.intern(&job.data_source_id),
            domain: self.intern(&job.domain_id),
            options: if job.options.is_empty() {
                None
            } else {
                Some(Box::new(Val::from_json(&serde_json::Value::Object(
                    job.options,
                ))))
            },
            created: ms(job.created_at),
            updated: ms(job.updated_at),
            finished: ms(job.finished_at),
            last_changed: ms(job.last_changed_at),
            ns,
        };
        let key = (rec.ns.clone(), rec.job_id.clone());
        if let Some(&slot) = self.by_key.get(&key) {
            // Domain and data source are immutable on the cluster, but a replayed or hand-made
            // record may still move between posting lists.
            if let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) {
                for p in Posted::ALL {
                    if !Arc::ptr_eq(p.of(&old), p.of(&rec)) {
                        self.unpost(p, p.of(&old), slot);
                        self.post(p, p.of(&rec).clone(), slot);
                    }
                }
                // Most updates (status, progress) leave the creation order as it is.
                if !same_order_keys(&old, &rec) {
                    self.order(&old, slot, false);
                    self.order(&rec, slot, true);
                }
            } else {
                self.order(&rec, slot, true);
            }
            self.put(slot, rec);
            return;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.positions.push([0; 3]);
                self.hot.push(Hot::default());
                to_u32(self.slots.len().saturating_sub(1))
            }
        };
        for p in Posted::ALL {
            self.post(p, p.of(&rec).clone(), slot);
        }
        self.order(&rec, slot, true);
        self.put(slot, rec);
        self.by_key.insert(key, slot);
    }

    pub fn remove(&mut self, namespace: &str, job_id: &str) -> bool {
        let key: (Arc<str>, Arc<str>) = (Arc::from(namespace), Arc::from(job_id));
        let Some(slot) = self.by_key.remove(&key) else {
            return false;
        };
        if let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            for p in Posted::ALL {
                self.unpost(p, p.of(&old), slot);
            }
            self.order(&old, slot, false);
        }
        if let Some(h) = self.hot.get_mut(slot as usize) {
            *h = Hot::default();
        }
        self.free.push(slot);
        true
    }

    /// Adds the slot to (or removes it from) its domain's and its data source's creation order.
    fn order(&mut self, r: &Rec, slot: u32, add: bool) {
        let domain = addr(&r.domain);
        for key in [(domain, 0), (domain, addr(&r.data_source))] {
            if add {
                self.by_created
                    .entry(key)
                    .or_default()
                    .insert((r.created, slot));
            } else if let Some(set) = self.by_created.get_mut(&key) {
                set.remove(&(r.created, slot));
                if set.is_empty() {
                    self.by_created.remove(&key);
                }
            }
        }
    }

    /// Stores a record (and its packed fields) in an allocated slot.
    fn put(&mut self, slot: u32, rec: Rec) {
        if let Some(h) = self.hot.get_mut(slot as usize) {
            *h = Hot::of(&rec);
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(rec);
        }
    }

    fn postings_of(&self, p: Posted) -> &HashMap<Arc<str>, Vec<u32>> {
        let [ns, domain, source] = &self.postings;
        match p {
            Posted::Namespace => ns,
            Posted::Domain => domain,
            Posted::DataSource => source,
        }
    }

    fn postings_of_mut(&mut self, p: Posted) -> &mut HashMap<Arc<str>, Vec<u32>> {
        let [ns, domain, source] = &mut self.postings;
        match p {
            Posted::Namespace => ns,
            Posted::Domain => domain,
            Posted::DataSource => source,
        }
    }

    fn position_mut(&mut self, slot: u32, p: Posted) -> Option<&mut u32> {
        self.positions.get_mut(slot as usize)?.get_mut(p as usize)
    }

    fn post(&mut self, p: Posted, value: Arc<str>, slot: u32) {
        let list = self.postings_of_mut(p).entry(value).or_default();
        list.push(slot);
        let at = to_u32(list.len().saturating_sub(1));
        if let Some(pos) = self.position_mut(slot, p) {
            *pos = at;
        }
    }

    fn unpost(&mut self, p: Posted, value: &Arc<str>, slot: u32) {
        let Some(at) = self.position_mut(slot, p).map(|a| *a as usize) else {
            return;
        };
        let Some(list) = self.postings_of_mut(p).get_mut(value) else {
            return;
        };
        if list.get(at) != Some(&slot) {
            return;
        }
        list.swap_remove(at);
        let moved = list.get(at).copied();
        let empty = list.is_empty();
        if let Some(moved) = moved
            && let Some(pos) = self.position_mut(moved, p)
        {
            *pos = to_u32(at);
        }
        if empty {
            self.postings_of_mut(p).remove(value);
        }
    }

    /// The slots holding `value` in field `p` (empty when none does).
    pub(crate) fn posting(&self, p: Posted, value: &str) -> &[u32] {
        self.postings_of(p).get(value).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn slot(&self, slot: u32) -> Option<&Rec> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Records in `scope` that the bound `filter` admits (see [`Index::plan`]).
    pub(crate) fn matching<'a, 'b>(
        &'a self,
        scope: &Scope,
        filter: &Filter,
        budget: &'b Budget<'_>,
    ) -> impl Iterator<Item = &'a Rec> + 'b
    where
        'a: 'b,
    {
        self.plan(scope, filter)
            .into_slots(budget)
            .filter_map(move |s| self.slot(s))
    }

    /// Plans a scan for a scope and a bound filter: visit the shortest posting list every answer
    /// must be in (the scope's namespace or single domain, or an `eq` on an interned field), or
    /// every slot when there is none; test the scope and those equalities on the packed fields,
    /// by address; test the other conditions on the record.
    pub(crate) fn plan<'a>(&'a self, scope: &Scope, filter: &Filter) -> Plan<'a> {
        let (eqs, rest) = filter.split_interned();
        let mut plan = Plan {
            index: self,
            slots: None,
            nothing: false,
            ns: None,
            domains: None,
            eqs: Vec::new(),
            rest,
        };
        let mut consider = |list: &'a [u32]| {
            if plan.slots.is_none_or(|b| list.len() < b.len()) {
                plan.slots = Some(list);
            }
        };
        if let Some(ns) = &scope.namespace {
            consider(self.posting(Posted::Namespace, ns));
            match self.interned(ns) {
                Some(a) => plan.ns = Some(addr(&a)),
                None => plan.nothing = true,
            }
        }
        if let Some(domains) = &scope.domains {
            if let [d] = domains.as_slice() {
                consider(self.posting(Posted::Domain, d));
            }
            let known: Vec<usize> = domains
                .iter()
                .filter_map(|d| self.interned(d))
                .map(|a| addr(&a))
                .collect();
            plan.nothing |= known.is_empty();
            plan.domains = Some(known);
        }
        for (field, value) in eqs {
            let p = match field {
                Field::DomainId => Posted::Domain,
                Field::DataSourceId => Posted::DataSource,
                _ => continue,
            };
            match value {
                Some(v) => {
                    consider(self.posting(p, v));
                    plan.eqs.push((p, addr(v)));
                }
                None => plan.nothing = true,
            }
        }
        plan
    }

    /// A slot's integer sort key for `field` (created_at from the packed fields).
    pub(crate) fn key_of(&self, slot: u32, field: Field) -> Option<i64> {
        let time = |ms: Millis| (ms != NO_TIME).then_some(ms);
        if field == Field::CreatedAt {
            return self.hot.get(slot as usize).and_then(|h| time(h.created));
        }
        let r = self.slot(slot)?;
        match field {
            Field::UpdatedAt => time(r.updated),
            Field::FinishedAt => time(r.finished),
            Field::LastChangedAt => time(r.last_changed),
            Field::TotalTasks => Some(r.total),
            Field::RemainedTasks => Some(r.remained),
            _ => None,
        }
    }

    /// Every record named `job_id`, one per namespace that holds one.
    pub(crate) fn named<'a>(&'a self, job_id: &'a str) -> impl Iterator<Item = &'a Rec> + 'a {
        self.postings_of(Posted::Namespace)
            .keys()
            .filter_map(move |ns| self.rec(ns, job_id))
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, namespace: &str, job_id: &str) -> Option<Job> {
        self.rec(namespace, job_id).map(Rec::to_job)
    }

    pub(crate) fn rec(&self, namespace: &str, job_id: &str) -> Option<&Rec> {
        let key: (Arc<str>, Arc<str>) = (Arc::from(namespace), Arc::from(job_id));
        let slot = *self.by_key.get(&key)?;
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The index's shared copy of a string, if any record holds it.
    pub(crate) fn interned(&self, s: &str) -> Option<Arc<str>> {
        self.interned.get(s).cloned()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Rec> {
        self.slots.iter().flatten()
    }

    /// Heap bytes held, estimated from the layout (reported in docs/performance.md and metrics).
    // Sums and multiples of the sizes of live allocations, each at most isize::MAX bytes: the
    // estimate cannot overflow a usize on any index that fits in memory.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn approx_heap_bytes(&self) -> usize {
        fn val_bytes(v: &Val) -> usize {
            match v {
                Val::Str(s) => 16 + s.len(),
                Val::Arr(a) => {
                    a.capacity() * std::mem::size_of::<Val>()
                        + a.iter().map(val_bytes).sum::<usize>()
                }
                Val::Obj(o) => {
                    o.capacity() * std::mem::size_of::<(Arc<str>, Val)>()
                        + o.iter()
                            .map(|(k, v)| 16 + k.len() + val_bytes(v))
                            .sum::<usize>()
                }
                _ => 0,
            }
        }
        let slots = self.slots.capacity() * std::mem::size_of::<Option<Rec>>();
        let free = self.free.capacity() * 4;
        let postings: usize = self
            .postings
            .iter()
            .map(|m| {
                (m.capacity() * 8 / 7) * (std::mem::size_of::<(Arc<str>, Vec<u32>)>() + 1)
                    + m.values().map(|v| v.capacity() * 4).sum::<usize>()
            })
            .sum::<usize>()
            + self.positions.capacity() * 12
            + self.hot.capacity() * std::mem::size_of::<Hot>()
            // B-tree leaves hold up to 11 keys, about 2/3 full on average.
            + self.by_created.values().map(|s| s.len() * 16 * 3 / 2).sum::<usize>();
        // hashbrown: key + value + one control byte per bucket, buckets ~ capacity * 8/7.
        let map = (self.by_key.capacity() * 8 / 7)
            * (std::mem::size_of::<((Arc<str>, Arc<str>), u32)>() + 1);
        let interned: usize = (self.interned.capacity() * 8 / 7) * 17
            + self.interned.iter().map(|s| 16 + s.len()).sum::<usize>();
        let per_rec: usize = self
            .iter()
            .map(|r| {
                16 + r.job_id.len()
                    + r.error_message.as_ref().map_or(0, |m| m.len())
                    + r.options
                        .as_deref()
                        .map_or(0, |o| std::mem::size_of::<Val>() + val_bytes(o))
            })
            .sum();
        slots + free + postings + map + interned + per_rec
    }
}
