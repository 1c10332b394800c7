//! Planning a scan: from a caller's scope and a bound filter, which slots of the index to visit
//! (the shortest posting list every answer must be in), what to test on their packed fields (by
//! address), and what is left to test on the records themselves.

use crate::filter::Filter;
use crate::limits::Budget;
use crate::record::{Record, Scope};
use crate::slots::{Created, DOMAIN, NAMESPACE, Slots, addr, to_u32};

/// How a call visits the index: which slots, tested first on their packed fields, then (for
/// the conditions left) on their records.
pub(crate) struct Plan<'a> {
    slots: &'a Slots,
    /// The shortest posting list every answer is in (`None`: visit every slot).
    candidates: Option<&'a [u32]>,
    nothing: bool,
    ns: Option<usize>,
    domains: Option<Vec<usize>>,
    /// (posting list, value address) pairs every answer has.
    eqs: Vec<(usize, usize)>,
    /// The status ordinals the filter admits (bit `i`: ordinal `i`; `None`: any).
    status: Option<u32>,
    rest: Filter,
}

impl<'a> Plan<'a> {
    /// Plans a scan for a scope and a bound filter: visit the shortest posting list every answer
    /// must be in (the scope's namespace or single domain, or an `eq` on an interned field), or
    /// every slot when there is none; test the scope and those equalities on the packed fields,
    /// by address; test the other conditions on the record.
    pub(crate) fn new(slots: &'a Slots, scope: &Scope, filter: &Filter) -> Plan<'a> {
        let (eqs, rest) = filter.split_interned();
        let (status, rest) = rest.split_status();
        let mut plan = Plan {
            slots,
            candidates: None,
            nothing: status == Some(0),
            ns: None,
            domains: None,
            eqs: Vec::new(),
            status,
            rest,
        };
        let mut consider = |list: &'a [u32]| {
            if plan.candidates.is_none_or(|b| list.len() < b.len()) {
                plan.candidates = Some(list);
            }
        };
        if let Some(ns) = &scope.namespace {
            consider(slots.posting(NAMESPACE, ns));
            match slots.interned(ns) {
                Some(a) => plan.ns = Some(addr(&a)),
                None => plan.nothing = true,
            }
        }
        if let Some(domains) = &scope.domains {
            if let [d] = domains.as_slice() {
                consider(slots.posting(DOMAIN, d));
            }
            let known: Vec<usize> = domains
                .iter()
                .filter_map(|d| slots.interned(d))
                .map(|a| addr(&a))
                .collect();
            plan.nothing |= known.is_empty();
            plan.domains = Some(known);
        }
        for (field, value) in eqs {
            let Some(p) = field.posting() else {
                continue;
            };
            match value {
                Some(v) => {
                    consider(slots.posting(p, v));
                    plan.eqs.push((p, addr(v)));
                }
                None => plan.nothing = true,
            }
        }
        plan
    }

    fn admits(&self, slot: u32) -> bool {
        let Some(h) = self.slots.hot(slot) else {
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
            if h.at(p) != want {
                return false;
            }
        }
        if let Some(mask) = self.status
            && mask & 1u32.checked_shl(u32::from(h.status)).unwrap_or(0) == 0
        {
            return false;
        }
        self.rest.is_empty() || self.slots.slot(slot).is_some_and(|r| self.rest.matches(r))
    }

    /// The admitted slots in creation order, when the plan admits exactly one domain's records
    /// (or those of one value of one of its posted fields) with no other condition.
    pub(crate) fn by_created(&self) -> Option<&'a Created> {
        if self.nothing || self.ns.is_some() || self.status.is_some() || !self.rest.is_empty() {
            return None;
        }
        let mut domain = match self.domains.as_deref() {
            Some([d]) => Some(*d),
            Some(_) => return None,
            None => None,
        };
        let mut other: Option<(usize, usize)> = None;
        for &(p, a) in &self.eqs {
            if p == DOMAIN {
                if domain.is_some_and(|have| have != a) {
                    // Two different domains: nothing matches; the scan says so.
                    return None;
                }
                domain = Some(a);
            } else if p == NAMESPACE || other.is_some_and(|have| have != (p, a)) {
                // Two different values (or two posted fields): the scan decides.
                return None;
            } else {
                other = Some((p, a));
            }
        }
        let (p, value) = other.unwrap_or((0, 0));
        Some(self.slots.created_order(domain?, p, value))
    }

    /// The admitted slots. Each candidate visited counts against the budget's clock; the scan
    /// stops early once the time is up (the caller then asks [`Budget::check_time`]).
    pub(crate) fn into_slots<'b>(self, budget: &'b Budget<'_>) -> impl Iterator<Item = u32> + 'b
    where
        'a: 'b,
    {
        let cost = self.rest.cost();
        let every = (!self.nothing && self.candidates.is_none())
            .then(|| 0..to_u32(self.slots.slot_count()));
        let listed = self
            .candidates
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

/// The slots of the records in `scope` that the bound `filter` admits (see [`Plan::new`]).
pub(crate) fn matching_slots<'a, 'b>(
    slots: &'a Slots,
    scope: &Scope,
    filter: &Filter,
    budget: &'b Budget<'_>,
) -> impl Iterator<Item = u32> + 'b
where
    'a: 'b,
{
    Plan::new(slots, scope, filter).into_slots(budget)
}

/// Records in `scope` that the bound `filter` admits (see [`Plan::new`]).
pub(crate) fn matching<'a, 'b>(
    slots: &'a Slots,
    scope: &Scope,
    filter: &Filter,
    budget: &'b Budget<'_>,
) -> impl Iterator<Item = &'a Record> + 'b
where
    'a: 'b,
{
    Plan::new(slots, scope, filter)
        .into_slots(budget)
        .filter_map(move |s| slots.slot(s))
}
