//! Evaluating a `group` stage: group keys, the ten accumulators, and the hash-based set that
//! `add_to_set` and `distinct` deduplicate with.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use super::parse::{GroupField, GroupKey};
use super::rows::{Pipeline, Row, Source, bson_type, charge, over, raw};
use crate::error::Error;
use crate::limits::StageUse;
use crate::plan::matching_slots;
use crate::record::Record;
use crate::schema::{Column, Field};
use crate::value::Bson;

/// For a single group key on a stored record's low-cardinality field: a number that identifies the
/// value without building it (the status's ordinal, or the address of the interned string).
fn fast_key(r: &Record, field: Field) -> Option<usize> {
    match field.column() {
        Column::Status(_) => Some(usize::from(r.status)),
        Column::Interned(k) if field.def().posted => {
            r.str_at(k).map(|s| Arc::as_ptr(s) as *const u8 as usize)
        }
        Column::Domain => Some(Arc::as_ptr(&r.domain) as *const u8 as usize),
        _ => None,
    }
}

/// Hashes a value consistently with MongoDB's equality (`cmp_bson`): 2 and 2.0 alike, null and
/// missing alike, every NaN alike.
///
/// The encoding is prefix-free: every value starts with its type's tag, and strings, arrays and
/// objects with their length. Without that, values an attacker builds of nothing but nested empty
/// arrays all fed the hasher the same (empty) input, and every hash-based stage degraded into a
/// quadratic search. The hasher itself is keyed per process ([`RandomState`]), so knowing the
/// encoding does not let a client pick colliding values either.
fn hash_val<H: Hasher>(v: &Bson, h: &mut H) {
    match v {
        Bson::Missing | Bson::Null => h.write_u8(0),
        Bson::Int(_) | Bson::Float(_) => {
            h.write_u8(1);
            let f = v.as_f64().unwrap_or(0.0);
            let f = if f == 0.0 || f.is_nan() { 0.0f64 } else { f };
            h.write_u64(f.to_bits());
        }
        Bson::Str(s) => {
            h.write_u8(2);
            hash_str(s, h);
        }
        Bson::Bool(b) => {
            h.write_u8(3);
            h.write_u8(u8::from(*b));
        }
        Bson::Date(d) => {
            h.write_u8(4);
            h.write_i64(*d);
        }
        Bson::Arr(a) => {
            h.write_u8(5);
            h.write_usize(a.len());
            a.iter().for_each(|x| hash_val(x, h));
        }
        Bson::Obj(o) => {
            h.write_u8(6);
            h.write_usize(o.len());
            o.iter().for_each(|(k, x)| {
                hash_str(k, h);
                hash_val(x, h)
            });
        }
    }
}

fn hash_str<H: Hasher>(s: &str, h: &mut H) {
    h.write_usize(s.len());
    h.write(s.as_bytes());
}

/// A value hashed as [`hash_val`] does.
struct Hashed<'v>(&'v Bson);

impl Hash for Hashed<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_val(self.0, h)
    }
}

/// A group's key: the values of its named keys, with MongoDB's equality (2 == 2.0), except that a
/// missing value is not null here. SpaceONE groups on a document (`_id: {name: "$key", ...}`), in
/// which a missing field is left out: `{}` and `{name: null}` are different groups, and the first
/// answers without the key.
#[derive(Clone, Debug)]
struct Key(Vec<Bson>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                matches!(a, Bson::Missing) == matches!(b, Bson::Missing) && a.cmp_bson(b).is_eq()
            })
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_usize(self.0.len());
        for v in &self.0 {
            match v {
                Bson::Missing => h.write_u8(0xff),
                v => hash_val(v, h),
            }
        }
    }
}

/// Values kept in arrival order without duplicates, found by hash: linear in the values, where a
/// search through the kept values would be quadratic.
#[derive(Default)]
pub(super) struct Dedup {
    pub(super) items: Vec<Bson>,
    /// The indexes in `items` of the values with each hash.
    slots: HashMap<u64, Vec<usize>>,
    hasher: RandomState,
}

impl Dedup {
    /// Keeps `v` unless a kept value equals it by `eq` (which must imply equal [`hash_val`]s);
    /// true when kept.
    pub(super) fn insert(&mut self, v: Bson, eq: impl Fn(&Bson, &Bson) -> bool) -> bool {
        let bucket = self
            .slots
            .entry(self.hasher.hash_one(Hashed(&v)))
            .or_default();
        if bucket
            .iter()
            .any(|i| self.items.get(*i).is_some_and(|x| eq(x, &v)))
        {
            return false;
        }
        bucket.push(self.items.len());
        self.items.push(v);
        true
    }

    /// The most kept values sharing one hash.
    #[cfg(test)]
    fn longest_chain(&self) -> usize {
        self.slots.values().map(Vec::len).max().unwrap_or(0)
    }
}

enum Acc {
    Count(f64),
    Sum(f64),
    Avg(f64, u64),
    Max(Option<Bson>),
    Min(Option<Bson>),
    First(Option<Bson>),
    Last(Bson),
    Push(Vec<Bson>),
    Set(Dedup),
    Merge(Vec<(Arc<str>, Bson)>),
}

/// The groups built so far, and how a row finds its own.
struct Groups<'s> {
    rules: &'s [GroupKey],
    specs: &'s [GroupField],
    /// A single plain key on a stored field identified by [`fast_key`].
    fast_field: Option<Field>,
    /// (fast key, slot) pairs: few distinct values in practice, and a short list beats hashing.
    fast: Vec<(usize, usize)>,
    index: HashMap<Key, usize>,
    groups: Vec<(Vec<Bson>, Vec<Acc>)>,
    stage: StageUse<'s, 's>,
}

impl Groups<'_> {
    #[inline]
    fn slot(&mut self, row: &Row<'_>) -> Result<usize, Error> {
        let quick = match (row, self.fast_field) {
            (Row::Record(r), Some(f)) => fast_key(r, f),
            _ => None,
        };
        if let Some(q) = quick
            && let Some((_, slot)) = self.fast.iter().find(|(k, _)| *k == q)
        {
            return Ok(*slot);
        }
        let slot = self.slow_slot(row)?;
        if let Some(q) = quick.filter(|_| self.fast.len() < 64) {
            self.fast.push((q, slot));
        }
        Ok(slot)
    }

    fn slow_slot(&mut self, row: &Row<'_>) -> Result<usize, Error> {
        let mut key = Vec::with_capacity(self.rules.len());
        for (_, path, fmt) in self.rules {
            let v = row.at(path);
            charge(self.stage.budget(), &v)?;
            key.push(match fmt {
                None => v,
                Some(fmt) => match v {
                    Bson::Date(ms) => {
                        Bson::str(&crate::time::date_to_string(ms, fmt).map_err(raw)?)
                    }
                    Bson::Null | Bson::Missing => Bson::Null,
                    other => {
                        return Err(raw(format!(
                            "can't convert from BSON type {} to Date",
                            bson_type(&other)
                        )));
                    }
                },
            });
        }
        let key = Key(key);
        if let Some(i) = self.index.get(&key) {
            return Ok(*i);
        }
        // A new group: its key twice (the list and the map) and its accumulators.
        let key_bytes = key
            .0
            .iter()
            .fold(0, |n: usize, v| n.saturating_add(v.approx_bytes()));
        self.stage
            .reserve(
                1,
                key_bytes
                    .saturating_mul(2)
                    .saturating_add(self.specs.len().saturating_mul(std::mem::size_of::<Acc>())),
            )
            .map_err(over)?;
        let slot = self.groups.len();
        self.groups
            .push((key.0.clone(), self.specs.iter().map(new_acc).collect()));
        self.index.insert(key, slot);
        Ok(slot)
    }
}

/// Runs a built `group` stage over the pipeline's rows (or its stored records, read in place).
pub(super) fn group(
    p: &mut Pipeline<'_>,
    rules: &[GroupKey],
    specs: &[GroupField],
) -> Result<(), Error> {
    let fast_field = match rules {
        [(_, path, None)] => path
            .field
            .as_ref()
            .filter(|f| f.sub.is_empty())
            .map(|f| f.field),
        _ => None,
    };
    // The stage's key paths were split when the pipeline was built: their length is work all
    // the same, counted before the first row.
    let segments = rules
        .iter()
        .map(|(_, p, _)| p.parts.len())
        .chain(specs.iter().flat_map(|s| {
            s.key
                .iter()
                .chain(s.push_fields.iter().map(|(_, p)| p))
                .chain(s.conditions.iter().map(|(p, _, _)| p))
                .map(|p| p.parts.len())
        }));
    p.budget
        .work(segments.fold(0, usize::saturating_add))
        .map_err(over)?;
    let mut g = Groups {
        rules,
        specs,
        fast_field,
        fast: Vec::new(),
        index: HashMap::new(),
        groups: Vec::new(),
        stage: StageUse::new(p.budget, "group"),
    };
    let budget = p.budget;
    // Plain counts need no per-row dispatch: the hot loop just bumps them.
    let plain_counts = specs
        .iter()
        .all(|s| s.op == "count" && s.conditions.is_empty());
    let add = |g: &mut Groups<'_>, row: &Row<'_>| -> Result<(), Error> {
        if !budget.tick(1) {
            return budget.check_time().map_err(over);
        }
        let slot = g.slot(row)?;
        let Some((_, accs)) = g.groups.get_mut(slot) else {
            return Err(raw("group lost"));
        };
        if plain_counts {
            for acc in accs.iter_mut() {
                if let Acc::Count(n) = acc {
                    *n += 1.0;
                }
            }
            return Ok(());
        }
        for (spec, acc) in g.specs.iter().zip(accs.iter_mut()) {
            accumulate(spec, acc, row, &mut g.stage)?;
        }
        Ok(())
    };
    match p.recs.take() {
        Some(Source::Scan {
            index,
            scope,
            filter,
        }) if plain_counts
            && fast_field.is_some_and(|f| matches!(f.column(), Column::Status(_))) =>
        {
            // Counts by status: the packed status finds the group; a record is read only for the
            // first row of each status (to build its key).
            let mut by_status: [Option<usize>; 32] = [None; 32];
            for s in matching_slots(index, scope, filter, budget) {
                let Some(ordinal) = index.hot(s).map(|h| usize::from(h.status)) else {
                    continue;
                };
                let known = by_status.get(ordinal).copied().flatten();
                let Some(slot) = known else {
                    if let Some(r) = index.slot(s) {
                        add(&mut g, &Row::Record(r))?;
                        if let Some(at) = by_status.get_mut(ordinal) {
                            *at = g.fast.iter().find(|(k, _)| *k == ordinal).map(|(_, s)| *s);
                        }
                    }
                    continue;
                };
                if !budget.tick(1) {
                    budget.check_time().map_err(over)?;
                    continue;
                }
                if let Some((_, accs)) = g.groups.get_mut(slot) {
                    for acc in accs.iter_mut() {
                        if let Acc::Count(n) = acc {
                            *n += 1.0;
                        }
                    }
                }
            }
            budget.check_time().map_err(over)?;
        }
        Some(source) => source.each_record(budget, &mut |r| add(&mut g, &Row::Record(r)))?,
        None => {
            for row in &p.rows {
                add(&mut g, row)?;
            }
        }
    }
    let mut groups = g.groups;
    if !p.ordered {
        // The input came in no meaningful order: give the groups a deterministic one.
        groups.sort_by(|(a, _), (b, _)| Bson::Arr(a.clone()).cmp_bson(&Bson::Arr(b.clone())));
    }
    p.rows = groups
        .into_iter()
        .map(|(key, accs)| {
            let id = if rules.is_empty() {
                Bson::Null
            } else {
                Bson::Obj(
                    rules
                        .iter()
                        .zip(key)
                        .filter(|(_, v)| !matches!(v, Bson::Missing))
                        .map(|((n, _, _), v)| (Arc::from(n.as_str()), v))
                        .collect(),
                )
            };
            let mut fields = vec![(Arc::from("_id"), id)];
            for (spec, acc) in specs.iter().zip(accs) {
                fields.push((Arc::from(spec.name.as_str()), finish(acc)));
            }
            Row::Doc(Bson::Obj(fields))
        })
        .collect();
    Ok(())
}

fn new_acc(spec: &GroupField) -> Acc {
    match spec.op {
        "count" => Acc::Count(0.0),
        "sum" => Acc::Sum(0.0),
        "average" => Acc::Avg(0.0, 0),
        "max" => Acc::Max(None),
        "min" => Acc::Min(None),
        "first" => Acc::First(None),
        "last" => Acc::Last(Bson::Null),
        "push" => Acc::Push(Vec::new()),
        "add_to_set" => Acc::Set(Dedup::default()),
        _ => Acc::Merge(Vec::new()),
    }
}

fn conditions_hold(
    spec: &GroupField,
    row: &Row<'_>,
    stage: &StageUse<'_, '_>,
) -> Result<bool, Error> {
    for (key, op, q) in &spec.conditions {
        let v = row.at(key);
        charge(stage.budget(), &v)?;
        // A `not` never gets here: MongoDB refuses the pipeline when it parses it.
        if !op.holds(v.cmp_bson(q)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn accumulate(
    spec: &GroupField,
    acc: &mut Acc,
    row: &Row<'_>,
    stage: &mut StageUse<'_, '_>,
) -> Result<(), Error> {
    let budget = stage.budget();
    let value = || -> Result<Bson, Error> {
        let v = spec.key.as_ref().map_or(Bson::Missing, |k| row.at(k));
        charge(budget, &v)?;
        Ok(v)
    };
    let holds = spec.conditions.is_empty() || conditions_hold(spec, row, stage)?;
    match acc {
        Acc::Count(n) => {
            if holds {
                *n += 1.0;
            }
        }
        Acc::Sum(s) => {
            if holds {
                *s += value()?.as_f64().unwrap_or(0.0);
            }
        }
        Acc::Avg(s, n) => {
            let v = if holds { value()? } else { Bson::Int(0) };
            if let Some(f) = v.as_f64() {
                *s += f;
                *n = n.saturating_add(1);
            }
        }
        Acc::Max(m) | Acc::Min(m) => {
            let v = value()?;
            if !v.is_nullish() {
                let is_max = matches!(spec.op, "max");
                let better = m.as_ref().is_none_or(|cur| {
                    let o = v.cmp_bson(cur);
                    if is_max { o.is_gt() } else { o.is_lt() }
                });
                if better {
                    *m = Some(v);
                }
            }
        }
        Acc::First(f) => {
            if f.is_none() {
                *f = Some(match value()? {
                    Bson::Missing => Bson::Null,
                    v => v,
                });
            }
        }
        Acc::Last(l) => {
            *l = match value()? {
                Bson::Missing => Bson::Null,
                v => v,
            }
        }
        Acc::Push(items) => {
            // `push` always has `fields` here: a key alone is refused when the pipeline is built.
            let mut obj = Vec::new();
            for (name, key) in &spec.push_fields {
                // The seed pushes datetimes as they are: the answer then fails to render.
                let v = row.at(key);
                charge(budget, &v)?;
                if !matches!(v, Bson::Missing) {
                    obj.push((Arc::from(name.as_str()), v));
                }
            }
            let v = Bson::Obj(obj);
            stage.add_bytes(v.approx_bytes()).map_err(over)?;
            items.push(v);
        }
        Acc::Set(set) => {
            let v = value()?;
            if !matches!(v, Bson::Missing) {
                let bytes = v.approx_bytes();
                if set.insert(v, |x, v| x.cmp_bson(v).is_eq()) {
                    stage.add_bytes(bytes).map_err(over)?;
                }
            }
        }
        Acc::Merge(fields) => match value()? {
            Bson::Obj(o) => {
                if !stage.tick(fields.len().saturating_mul(o.len())) {
                    return Err(over(stage.time_exceeded()));
                }
                for (k, v) in o {
                    stage.add_bytes(v.approx_bytes()).map_err(over)?;
                    match fields.iter_mut().find(|(fk, _)| *fk == k) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((k, v)),
                    }
                }
            }
            Bson::Null | Bson::Missing => {}
            other => {
                return Err(raw(format!(
                    "$mergeObjects requires object inputs, but input {} is of type {}",
                    other
                        .to_struct_json(false)
                        .map(|j| j.to_string())
                        .unwrap_or_default(),
                    bson_type(&other)
                )));
            }
        },
    }
    Ok(())
}

fn finish(acc: Acc) -> Bson {
    match acc {
        Acc::Count(n) => Bson::Float(n),
        Acc::Sum(s) => Bson::Float(s),
        Acc::Avg(s, n) => {
            if n == 0 {
                Bson::Null
            } else {
                Bson::Float(s / n as f64)
            }
        }
        Acc::Max(m) | Acc::Min(m) => m.unwrap_or(Bson::Null),
        Acc::First(f) => f.unwrap_or(Bson::Null),
        Acc::Last(l) => l,
        Acc::Push(items) => Bson::Arr(items),
        Acc::Set(set) => Bson::Arr(set.items),
        Acc::Merge(fields) => Bson::Obj(fields),
    }
}

#[cfg(test)]
mod tests;
