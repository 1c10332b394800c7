//! Evaluating a parsed list [`Query`] over the index: plan the scan, collect the admitted slots,
//! order them (on extracted integer keys where the sort allows, or straight from a creation
//! order when the plan admits one domain's or data source's jobs), and take the page.

use std::cmp::Ordering;

use crate::error::Error;
use crate::limits::Budget;
use crate::plan::Plan;
use crate::query::{Query, SortKey};
use crate::record::{NO_TIME, Record, Scope};
use crate::schema::{Column, Field};
use crate::slots::{Created, Slots};
use crate::value::Bson;

fn sort_value(r: &Record, key: &SortKey) -> Bson {
    match &key.path {
        Ok(p) => r.get(p),
        Err(_) => Bson::Missing,
    }
}

fn compare(a: &Record, b: &Record, keys: &[SortKey]) -> Ordering {
    if keys.is_empty() {
        return b.created.cmp(&a.created).then_with(|| a.natural_cmp(b));
    }
    for k in keys {
        let o = sort_value(a, k).cmp_bson(&sort_value(b, k));
        let o = if k.desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.natural_cmp(b)
}

/// The sort as one integer field, when it is a single top-level time or count field (or the
/// default order, created_at descending): its key is `None` where BSON has null, which sorts first.
fn integer_key(index: &Slots, keys: &[SortKey]) -> Option<(Field, bool)> {
    let [key] = keys else {
        return keys
            .is_empty()
            .then(|| index.schema().created())
            .flatten()
            .map(|created| (created, true));
    };
    let path = key.path.as_ref().ok()?;
    (path.sub.is_empty() && path.field.is_integer()).then_some((path.field, key.desc))
}

type Keyed = (Option<i64>, u32);

/// Query order on extracted keys: the key (reversed when descending), then the natural order.
fn keyed_cmp(index: &Slots, desc: bool) -> impl Fn(&Keyed, &Keyed) -> Ordering + '_ {
    move |a, b| {
        let o = a.0.cmp(&b.0);
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| match (index.slot(a.1), index.slot(b.1)) {
            (Some(x), Some(y)) => x.natural_cmp(y),
            _ => a.1.cmp(&b.1),
        })
    }
}

/// The first `end` (`None`: all) admitted slots' records, in query order.
fn order<'a>(
    index: &'a Slots,
    slots: &[u32],
    keys: &[SortKey],
    end: Option<usize>,
) -> Vec<&'a Record> {
    if let Some((field, desc)) = integer_key(index, keys) {
        // Extract each key once; records are touched only to break ties.
        let mut keyed: Vec<Keyed> = slots.iter().map(|&s| (index.key_of(s, field), s)).collect();
        let by_key = |a: &Keyed, b: &Keyed| {
            let o = a.0.cmp(&b.0);
            if desc { o.reverse() } else { o }
        };
        let cmp = keyed_cmp(index, desc);
        // `end` in 1..len: the index of the last row kept.
        let nth = end
            .filter(|e| *e < keyed.len())
            .and_then(|e| e.checked_sub(1));
        if let Some(nth) = nth {
            // Many rows can share a key (creation times have one-second resolution): select
            // by key alone, then order only the rows tied with the last one kept.
            keyed.select_nth_unstable_by(nth, by_key);
        }
        if let (Some(end), Some(&last)) = (end, nth.and_then(|n| keyed.get(n))) {
            let (mut kept, mut tied): (Vec<_>, Vec<_>) = (Vec::with_capacity(end), Vec::new());
            for k in keyed {
                match by_key(&k, &last) {
                    Ordering::Less => kept.push(k),
                    Ordering::Equal => tied.push(k),
                    Ordering::Greater => {}
                }
            }
            let room = end.saturating_sub(kept.len());
            partial_sort(&mut tied, Some(room), &cmp);
            kept.extend(tied.into_iter().take(room));
            keyed = kept;
        }
        partial_sort(&mut keyed, end, &cmp);
        return keyed
            .into_iter()
            .filter_map(|(_, s)| index.slot(s))
            .collect();
    }
    let mut rows: Vec<&Record> = slots.iter().filter_map(|&s| index.slot(s)).collect();
    partial_sort(&mut rows, end, |a, b| compare(a, b, keys));
    rows
}

/// The first `end` (`None`: all) of a creation-ordered set in query order: walks from the
/// requested end, keeps going while the key ties with the last row taken, then orders those.
fn first_by_created<'a>(
    index: &'a Slots,
    set: &Created,
    desc: bool,
    end: Option<usize>,
) -> Vec<&'a Record> {
    let end = end.unwrap_or(set.len());
    let key = |ms: i64| (ms != NO_TIME).then_some(ms);
    let walk: Box<dyn Iterator<Item = &(i64, u32)>> = if desc {
        Box::new(set.iter().rev())
    } else {
        Box::new(set.iter())
    };
    let mut taken: Vec<Keyed> = Vec::with_capacity(end.min(set.len()));
    for &(ms, slot) in walk {
        if taken.len() >= end && taken.last().is_none_or(|l| l.0 != key(ms)) {
            break;
        }
        taken.push((key(ms), slot));
    }
    partial_sort(&mut taken, Some(end), keyed_cmp(index, desc));
    taken
        .into_iter()
        .filter_map(|(_, s)| index.slot(s))
        .collect()
}

fn partial_sort<T>(rows: &mut Vec<T>, end: Option<usize>, cmp: impl Fn(&T, &T) -> Ordering) {
    if let Some(end) = end {
        // Only the first `end` rows in order are needed: partition, then sort that prefix.
        if end == 0 {
            rows.clear();
            return;
        }
        if let Some(nth) = end.checked_sub(1).filter(|_| end < rows.len()) {
            rows.select_nth_unstable_by(nth, &cmp);
            rows.truncate(end);
        }
    }
    rows.sort_unstable_by(cmp);
}

/// Records matching scope and filter, in query order, and the total before paging.
pub(crate) fn run<'a>(
    index: &'a Slots,
    scope: &Scope,
    q: &Query,
    budget: &Budget<'_>,
) -> Result<(Vec<&'a Record>, usize), Error> {
    if q.schema.is_some_and(|s| !std::ptr::eq(s, index.schema())) {
        return Err(Error::db_query(format!(
            "the query was parsed for another resource than {}",
            index.schema().resource
        )));
    }
    let (rows, total) = run_unchecked(index, scope, q, budget);
    budget.check_time().map_err(Error::db_query)?;
    Ok((rows, total))
}

fn run_unchecked<'a>(
    index: &'a Slots,
    scope: &Scope,
    q: &Query,
    budget: &Budget<'_>,
) -> (Vec<&'a Record>, usize) {
    let filter = q.filter.bound(&|s| index.interned(s));
    let plan = Plan::new(index, scope, &filter);
    let created_order =
        integer_key(index, &q.sort).filter(|(f, _)| matches!(f.column(), Column::Created));
    if let (Some((_, desc)), Some(set)) = (created_order, plan.by_created()) {
        let total = set.len();
        if q.count_only {
            return (Vec::new(), total);
        }
        let window = q.page.window(total);
        let mut rows = first_by_created(index, set, desc, window.map(|(_, end)| end));
        if let Some((start, _)) = window {
            rows.drain(..start.min(rows.len()));
        }
        return (rows, total);
    }
    let slots: Vec<u32> = plan.into_slots(budget).collect();
    if budget.check_time().is_err() {
        return (Vec::new(), 0);
    }
    let total = slots.len();
    if q.count_only {
        return (Vec::new(), total);
    }
    match q.page.window(total) {
        Some((start, end)) => {
            let mut rows = order(index, &slots, &q.sort, Some(end));
            rows.truncate(end);
            rows.drain(..start.min(rows.len()));
            (rows, total)
        }
        None => (order(index, &slots, &q.sort, None), total),
    }
}
