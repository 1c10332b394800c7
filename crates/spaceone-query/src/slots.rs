//! The index's storage: records of one resource in a slot vector addressed by (namespace, id),
//! their low-cardinality strings (namespace, domain, data source, error code, job id) interned and
//! shared. Posting lists of slots per namespace, domain and each posted field of the table let a
//! call that names one of them (every SpaceONE call names its domain) visit only those records;
//! per slot, the fields most calls test and sort on are packed ([`ScanRow`]); per domain and per
//! posted value within it, the slots in creation order ([`Created`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::record::{NO_TIME, Record};
use crate::schema::{Column, Columns, Field, MAX_POSTED, Schema};
use crate::time::{Millis, to_millis};

/// Posting lists: 0 the namespace, 1 the domain, `2 + k` a posted `Interned(k)` field.
pub(crate) const NAMESPACE: usize = 0;
pub(crate) const DOMAIN: usize = 1;
const POSTINGS: usize = MAX_POSTED + 2;

/// A posting list's value in a record (`None`: the record has none, so it is in no list).
fn posted_of(r: &Record, p: usize) -> Option<&Arc<str>> {
    match p {
        NAMESPACE => Some(&r.ns),
        DOMAIN => Some(&r.domain),
        _ => r.str_at(p.checked_sub(2)?),
    }
}

/// The identity of a record's place in one creation order: (domain, posting list or 0 for all of
/// the domain's, value's address or 0).
pub(crate) type OrderKey = (usize, usize, usize);

#[derive(Debug)]
pub(crate) struct Slots {
    schema: &'static Schema,
    /// Which `Interned(k)` columns are posted (from the table).
    posted: [bool; MAX_POSTED],
    slots: Vec<Option<Record>>,
    free: Vec<u32>,
    by_key: HashMap<(Arc<str>, Arc<str>), u32>,
    interned: HashSet<Arc<str>>,
    /// Per posting list: value -> the slots holding it (unordered).
    postings: [HashMap<Arc<str>, Vec<u32>>; POSTINGS],
    /// Per slot: where it sits in each of its posting lists, so removal is a swap_remove.
    positions: Vec<[u32; POSTINGS]>,
    /// Per slot: what most calls test and sort on, packed, so a scan reads 48 bytes per
    /// candidate instead of the whole record (all zero for a free slot).
    hot: Vec<ScanRow>,
    /// Per (domain, posted field and value, or 0 for all of the domain's): its slots by
    /// creation time. The most common call, a domain's or a data source's (a job's) newest
    /// records a page at a time, reads a page's worth of these instead of scanning (values are
    /// interned-string addresses).
    by_created: HashMap<OrderKey, Created>,
}

/// Slots by creation time (`NO_TIME` first).
pub(crate) type Created = BTreeSet<(Millis, u32)>;

static NO_SLOTS: Created = BTreeSet::new();

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanRow {
    /// Addresses of the interned strings (stable: interned strings are never freed; 0: a free
    /// slot, or no value).
    pub ns: usize,
    pub domain: usize,
    /// The posted `Interned(k)` columns.
    pub posted: [usize; MAX_POSTED],
    pub created: Millis,
    /// The status's stored ordinal.
    pub status: u8,
}

impl ScanRow {
    fn of(r: &Record, posted: &[bool; MAX_POSTED]) -> ScanRow {
        let mut row = ScanRow {
            ns: addr(&r.ns),
            domain: addr(&r.domain),
            posted: [0; MAX_POSTED],
            created: r.created,
            status: r.status,
        };
        for (k, (want, at)) in posted.iter().zip(row.posted.iter_mut()).enumerate() {
            if *want {
                *at = r.str_at(k).map_or(0, addr);
            }
        }
        row
    }

    /// A posting list's value address (0: none).
    #[inline]
    pub(crate) fn at(&self, p: usize) -> usize {
        match p {
            NAMESPACE => self.ns,
            DOMAIN => self.domain,
            _ => p
                .checked_sub(2)
                .and_then(|k| self.posted.get(k))
                .copied()
                .unwrap_or(0),
        }
    }
}

/// Whether two records sit at the same place in the creation orders.
fn same_order_keys(a: &Record, b: &Record, posted: &[bool; MAX_POSTED]) -> bool {
    a.created == b.created
        && Arc::ptr_eq(&a.domain, &b.domain)
        && posted
            .iter()
            .enumerate()
            .all(|(k, want)| !want || same(a.str_at(k), b.str_at(k)))
}

fn same(a: Option<&Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// Identity of an interned string.
pub(crate) fn addr(a: &Arc<str>) -> usize {
    Arc::as_ptr(a).cast::<u8>() as usize
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Slots {
    pub(crate) fn new(schema: &'static Schema) -> Slots {
        let mut posted = [false; MAX_POSTED];
        for f in schema.fields {
            if let (Column::Interned(k), true) = (f.column, f.posted)
                && let Some(p) = posted.get_mut(k)
            {
                *p = true;
            }
        }
        Slots {
            schema,
            posted,
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            interned: HashSet::new(),
            postings: Default::default(),
            positions: Vec::new(),
            hot: Vec::new(),
            by_created: HashMap::new(),
        }
    }

    pub(crate) fn schema(&self) -> &'static Schema {
        self.schema
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.interned.insert(a.clone());
        a
    }

    /// The posting lists this index keeps: the namespace's, the domain's, the posted fields'.
    fn postings_kept(&self) -> impl Iterator<Item = usize> + use<> {
        let posted = self.posted;
        (0..POSTINGS).filter(move |p| {
            p.checked_sub(2)
                .is_none_or(|k| posted.get(k).copied().unwrap_or(false))
        })
    }

    /// Inserts a record, or replaces the one with the same (namespace, id).
    pub(crate) fn upsert(&mut self, c: Columns) {
        let ns = self.intern(&c.namespace);
        let mut strs: [Option<Arc<str>>; crate::schema::MAX_STRS] = Default::default();
        for (at, s) in strs.iter_mut().zip(&c.strs) {
            *at = s.as_deref().map(|s| self.intern(s));
        }
        let rec = Record {
            id: Arc::from(c.id.as_str()),
            domain: self.intern(&c.domain),
            strs,
            text: c.text.map(String::into_boxed_str),
            options: if c.options.is_empty() {
                None
            } else {
                serde_json::to_string(&c.options)
                    .ok()
                    .map(String::into_boxed_str)
            },
            nums: c.nums,
            created: c.created.map_or(NO_TIME, to_millis),
            status: c.status,
            ns,
        };
        let key = (rec.ns.clone(), rec.id.clone());
        if let Some(&slot) = self.by_key.get(&key) {
            // Domain and data source are immutable on the cluster, but a replayed or hand-made
            // record may still move between posting lists.
            if let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) {
                for p in self.postings_kept() {
                    let (was, is) = (posted_of(&old, p), posted_of(&rec, p));
                    if !same(was, is) {
                        if let Some(was) = was {
                            self.unpost(p, was, slot);
                        }
                        if let Some(is) = is {
                            self.post(p, is.clone(), slot);
                        }
                    }
                }
                // Most updates (status, progress) leave the creation order as it is.
                if !same_order_keys(&old, &rec, &self.posted) {
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
                self.positions.push([0; POSTINGS]);
                self.hot.push(ScanRow::default());
                to_u32(self.slots.len().saturating_sub(1))
            }
        };
        for p in self.postings_kept() {
            if let Some(v) = posted_of(&rec, p) {
                self.post(p, v.clone(), slot);
            }
        }
        self.order(&rec, slot, true);
        self.put(slot, rec);
        self.by_key.insert(key, slot);
    }

    pub(crate) fn remove(&mut self, namespace: &str, id: &str) -> bool {
        let key: (Arc<str>, Arc<str>) = (Arc::from(namespace), Arc::from(id));
        let Some(slot) = self.by_key.remove(&key) else {
            return false;
        };
        if let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            for p in self.postings_kept() {
                if let Some(v) = posted_of(&old, p) {
                    self.unpost(p, v, slot);
                }
            }
            self.order(&old, slot, false);
        }
        if let Some(h) = self.hot.get_mut(slot as usize) {
            *h = ScanRow::default();
        }
        self.free.push(slot);
        true
    }

    /// Adds the slot to (or removes it from) its domain's creation order and that of each of its
    /// posted values.
    fn order(&mut self, r: &Record, slot: u32, add: bool) {
        let domain = addr(&r.domain);
        let posted = self.posted;
        let keys = std::iter::once((domain, 0, 0)).chain(
            posted
                .into_iter()
                .enumerate()
                .filter(|(_, want)| *want)
                .filter_map(|(k, _)| Some((domain, k.checked_add(2)?, addr(r.str_at(k)?)))),
        );
        for key in keys {
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
            *h = ScanRow::of(&rec, &self.posted);
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(rec);
        }
    }

    fn position_mut(&mut self, slot: u32, p: usize) -> Option<&mut u32> {
        self.positions.get_mut(slot as usize)?.get_mut(p)
    }

    fn post(&mut self, p: usize, value: Arc<str>, slot: u32) {
        let Some(map) = self.postings.get_mut(p) else {
            return;
        };
        let list = map.entry(value).or_default();
        list.push(slot);
        let at = to_u32(list.len().saturating_sub(1));
        if let Some(pos) = self.position_mut(slot, p) {
            *pos = at;
        }
    }

    fn unpost(&mut self, p: usize, value: &Arc<str>, slot: u32) {
        let Some(at) = self.position_mut(slot, p).map(|a| *a as usize) else {
            return;
        };
        let Some(list) = self.postings.get_mut(p).and_then(|m| m.get_mut(value)) else {
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
        if empty && let Some(map) = self.postings.get_mut(p) {
            map.remove(value);
        }
    }

    /// The slots holding `value` in posting list `p` (empty when none does).
    #[inline]
    pub(crate) fn posting(&self, p: usize, value: &str) -> &[u32] {
        self.postings
            .get(p)
            .and_then(|m| m.get(value))
            .map_or(&[], Vec::as_slice)
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

    /// A domain's slots (`p` 0), or those of one value (an interned address) of its posting list
    /// `p`, in creation order.
    pub(crate) fn created_order(&self, domain: usize, p: usize, value: usize) -> &Created {
        self.by_created
            .get(&(domain, p, value))
            .unwrap_or(&NO_SLOTS)
    }

    /// A slot's integer sort key for `field` (created_at from the packed fields).
    pub(crate) fn key_of(&self, slot: u32, field: Field) -> Option<i64> {
        let time = |ms: Millis| (ms != NO_TIME).then_some(ms);
        if let Column::Created = field.column() {
            return self.hot.get(slot as usize).and_then(|h| time(h.created));
        }
        let r = self.slot(slot)?;
        match field.column() {
            Column::Time(k) => time(r.num(k)),
            Column::Int(k) => r.nums.get(k).copied(),
            _ => None,
        }
    }

    /// Every record named `id`, one per namespace that holds one.
    pub(crate) fn named<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.postings
            .get(NAMESPACE)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(move |ns| self.rec(ns, id))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub(crate) fn rec(&self, namespace: &str, id: &str) -> Option<&Record> {
        let key: (Arc<str>, Arc<str>) = (Arc::from(namespace), Arc::from(id));
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
            + self.positions.capacity() * std::mem::size_of::<[u32; POSTINGS]>()
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
                16 + r.id.len()
                    + r.text.as_ref().map_or(0, |m| m.len())
                    + r.options.as_ref().map_or(0, |o| o.len())
            })
            .sum();
        slots + free + postings + map + interned + per_rec
    }
}
