//! The index's storage: job records in a slot vector addressed by (namespace, job_id), their
//! low-cardinality strings (namespace, domain, data source, error code) interned and shared.
//! Posting lists of slots per namespace, domain and data source let a call that names one of them
//! (every SpaceONE call names its domain) visit only those records; per slot, the fields most
//! calls test and sort on are packed ([`ScanRow`]); per domain and data source, the slots in creation
//! order ([`Created`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::{Field, Job};
use crate::record::{NO_TIME, Record};
use crate::time::{Millis, to_millis};

/// The fields with posting lists, in the order of `Slots::postings` and `Slots::positions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PostingField {
    Namespace = 0,
    Domain = 1,
    DataSource = 2,
}

impl PostingField {
    const ALL: [PostingField; 3] = [
        PostingField::Namespace,
        PostingField::Domain,
        PostingField::DataSource,
    ];

    fn of(self, r: &Record) -> &Arc<str> {
        match self {
            PostingField::Namespace => &r.ns,
            PostingField::Domain => &r.domain,
            PostingField::DataSource => &r.data_source,
        }
    }
}

#[derive(Default, Debug)]
pub(crate) struct Slots {
    slots: Vec<Option<Record>>,
    free: Vec<u32>,
    by_key: HashMap<(Arc<str>, Arc<str>), u32>,
    interned: HashSet<Arc<str>>,
    /// Per posted field: value -> the slots holding it (unordered).
    postings: [HashMap<Arc<str>, Vec<u32>>; 3],
    /// Per slot: where it sits in each of its posting lists, so removal is a swap_remove.
    positions: Vec<[u32; 3]>,
    /// Per slot: what most calls test and sort on, packed, so a scan reads 32 bytes per
    /// candidate instead of the whole record (all zero for a free slot).
    hot: Vec<ScanRow>,
    /// Per (domain, data source or 0 for all of the domain's): its slots by creation time. The
    /// most common call, a domain's or a data source's newest jobs a page at a time, reads a
    /// page's worth of these instead of scanning (keys are interned-string addresses).
    by_created: HashMap<(usize, usize), Created>,
}

/// Slots by creation time (`NO_TIME` first).
pub(crate) type Created = BTreeSet<(Millis, u32)>;

static NO_SLOTS: Created = BTreeSet::new();

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanRow {
    /// Addresses of the interned strings (stable: interned strings are never freed; 0: a free
    /// slot).
    pub ns: usize,
    pub domain: usize,
    pub data_source: usize,
    pub created: Millis,
}

impl ScanRow {
    fn of(r: &Record) -> ScanRow {
        ScanRow {
            ns: addr(&r.ns),
            domain: addr(&r.domain),
            data_source: addr(&r.data_source),
            created: r.created,
        }
    }
}

/// Whether two records sit at the same place in the creation orders.
fn same_order_keys(a: &Record, b: &Record) -> bool {
    a.created == b.created
        && Arc::ptr_eq(&a.domain, &b.domain)
        && Arc::ptr_eq(&a.data_source, &b.data_source)
}

/// Identity of an interned string.
pub(crate) fn addr(a: &Arc<str>) -> usize {
    Arc::as_ptr(a).cast::<u8>() as usize
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Slots {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.interned.insert(a.clone());
        a
    }

    /// Inserts a job, or replaces the one with the same (namespace, job_id).
    pub(crate) fn upsert(&mut self, job: Job) {
        let ms = |t: Option<DateTime<Utc>>| t.map_or(NO_TIME, to_millis);
        let ns = self.intern(&job.namespace);
        let rec = Record {
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
                serde_json::to_string(&job.options)
                    .ok()
                    .map(String::into_boxed_str)
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
                for p in PostingField::ALL {
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
                self.hot.push(ScanRow::default());
                to_u32(self.slots.len().saturating_sub(1))
            }
        };
        for p in PostingField::ALL {
            self.post(p, p.of(&rec).clone(), slot);
        }
        self.order(&rec, slot, true);
        self.put(slot, rec);
        self.by_key.insert(key, slot);
    }

    pub(crate) fn remove(&mut self, namespace: &str, job_id: &str) -> bool {
        let key: (Arc<str>, Arc<str>) = (Arc::from(namespace), Arc::from(job_id));
        let Some(slot) = self.by_key.remove(&key) else {
            return false;
        };
        if let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            for p in PostingField::ALL {
                self.unpost(p, p.of(&old), slot);
            }
            self.order(&old, slot, false);
        }
        if let Some(h) = self.hot.get_mut(slot as usize) {
            *h = ScanRow::default();
        }
        self.free.push(slot);
        true
    }

    /// Adds the slot to (or removes it from) its domain's and its data source's creation order.
    fn order(&mut self, r: &Record, slot: u32, add: bool) {
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
    fn put(&mut self, slot: u32, rec: Record) {
        if let Some(h) = self.hot.get_mut(slot as usize) {
            *h = ScanRow::of(&rec);
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(rec);
        }
    }

    fn postings_of(&self, p: PostingField) -> &HashMap<Arc<str>, Vec<u32>> {
        let [ns, domain, source] = &self.postings;
        match p {
            PostingField::Namespace => ns,
            PostingField::Domain => domain,
            PostingField::DataSource => source,
        }
    }

    fn postings_of_mut(&mut self, p: PostingField) -> &mut HashMap<Arc<str>, Vec<u32>> {
        let [ns, domain, source] = &mut self.postings;
        match p {
            PostingField::Namespace => ns,
            PostingField::Domain => domain,
            PostingField::DataSource => source,
        }
    }

    fn position_mut(&mut self, slot: u32, p: PostingField) -> Option<&mut u32> {
        self.positions.get_mut(slot as usize)?.get_mut(p as usize)
    }

    fn post(&mut self, p: PostingField, value: Arc<str>, slot: u32) {
        let list = self.postings_of_mut(p).entry(value).or_default();
        list.push(slot);
        let at = to_u32(list.len().saturating_sub(1));
        if let Some(pos) = self.position_mut(slot, p) {
            *pos = at;
        }
    }

    fn unpost(&mut self, p: PostingField, value: &Arc<str>, slot: u32) {
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
    #[inline]
    pub(crate) fn posting(&self, p: PostingField, value: &str) -> &[u32] {
        self.postings_of(p).get(value).map_or(&[], Vec::as_slice)
    }

    #[inline]
    pub(crate) fn slot(&self, slot: u32) -> Option<&Record> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// How many slots there are, free ones included (slot numbers are below it).
    #[inline]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// A slot's packed fields (all zero for a free slot).
    #[inline]
    pub(crate) fn hot(&self, slot: u32) -> Option<&ScanRow> {
        self.hot.get(slot as usize)
    }

    /// A domain's slots (`source` 0), or one of its data sources' (an interned address), in
    /// creation order.
    pub(crate) fn created_order(&self, domain: usize, source: usize) -> &Created {
        self.by_created.get(&(domain, source)).unwrap_or(&NO_SLOTS)
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
    pub(crate) fn named<'a>(&'a self, job_id: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.postings_of(PostingField::Namespace)
            .keys()
            .filter_map(move |ns| self.rec(ns, job_id))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub(crate) fn rec(&self, namespace: &str, job_id: &str) -> Option<&Record> {
        let key: (Arc<str>, Arc<str>) = (Arc::from(namespace), Arc::from(job_id));
        let slot = *self.by_key.get(&key)?;
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The index's shared copy of a string, if any record holds it.
    pub(crate) fn interned(&self, s: &str) -> Option<Arc<str>> {
        self.interned.get(s).cloned()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Record> {
        self.slots.iter().flatten()
    }

    /// Heap bytes held, estimated from the layout (reported in docs/performance.md and metrics).
    // Sums and multiples of the sizes of live allocations, each at most isize::MAX bytes: the
    // estimate cannot overflow a usize on any index that fits in memory.
    #[allow(clippy::arithmetic_side_effects)]
    pub(crate) fn approx_heap_bytes(&self) -> usize {
        let slots = self.slots.capacity() * std::mem::size_of::<Option<Record>>();
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
            + self.hot.capacity() * std::mem::size_of::<ScanRow>()
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
                    + r.options.as_ref().map_or(0, |o| o.len())
            })
            .sum();
        slots + free + postings + map + interned + per_rec
    }
}
