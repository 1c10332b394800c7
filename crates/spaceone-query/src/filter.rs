//! A compiled filter: `AND(filter...) AND OR(filter_or...)` of conditions, each a test on a
//! stored record's field with MongoDB's comparison semantics; bound to one index, string
//! equalities on interned fields become pointer comparisons (what [`crate::plan`] plans with).

use std::sync::Arc;

use regex_automata::meta::Regex;

use crate::record::Record;
use crate::schema::{Column, Field, FieldPath};
use crate::value::Bson;

/// A comparison, the one vocabulary of the filter's comparison operators and the stat group
/// conditions': both name it the reference's way (`not` for not-equal) and parse the name once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Cmp {
    /// The comparison an operator names, if it names one.
    pub(crate) fn named(operator: &str) -> Option<Cmp> {
        Some(match operator {
            "eq" => Cmp::Eq,
            "not" => Cmp::Ne,
            "lt" => Cmp::Lt,
            "lte" => Cmp::Lte,
            "gt" => Cmp::Gt,
            "gte" => Cmp::Gte,
            _ => return None,
        })
    }

    /// The operator's name, as [`Cmp::named`] reads it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Cmp::Eq => "eq",
            Cmp::Ne => "not",
            Cmp::Lt => "lt",
            Cmp::Lte => "lte",
            Cmp::Gt => "gt",
            Cmp::Gte => "gte",
        }
    }

    /// Whether a value that orders `o` against the compared-to value passes.
    pub(crate) fn holds(self, o: std::cmp::Ordering) -> bool {
        match self {
            Cmp::Eq => o.is_eq(),
            Cmp::Ne => o.is_ne(),
            Cmp::Lt => o.is_lt(),
            Cmp::Lte => o.is_le(),
            Cmp::Gt => o.is_gt(),
            Cmp::Gte => o.is_ge(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Test {
    Cmp(Cmp, Bson),
    In(Values),
    NotIn(Values),
    Exists(bool),
    /// Any of the patterns matches (contain, contain_in, regex, regex_in).
    Regex(Vec<Regex>),
    /// At least one pattern does not match (not_contain, and the reference's OR-ed not_contain_in).
    NotRegex(Vec<Regex>),
    ElemMatch(Vec<(Vec<String>, Cmp, Bson)>),
    Never,
    /// `eq` on an interned field, bound to one index: the index's shared copy of the string
    /// (`None`: no record holds it), so a match is a pointer comparison.
    Interned(Option<Arc<str>>),
}

/// The values of an `in` list: strings in a hash set (a field's string is found in one lookup,
/// whatever the list's length), other values compared one by one.
#[derive(Clone, Debug)]
pub(crate) struct Values {
    all: Vec<Bson>,
    strs: std::collections::HashSet<Arc<str>>,
    others: Vec<Bson>,
}

impl Values {
    pub(crate) fn new(all: Vec<Bson>) -> Values {
        let mut strs = std::collections::HashSet::new();
        let mut others = Vec::new();
        for v in &all {
            match v {
                Bson::Str(s) => {
                    strs.insert(s.clone());
                }
                other => others.push(other.clone()),
            }
        }
        Values { all, strs, others }
    }

    /// Whether the field equals one of the values as a query compares (a string only ever
    /// equals a string with the same bytes).
    fn any_eq(&self, v: &Bson) -> bool {
        match v {
            Bson::Str(s) => self.strs.contains(s),
            Bson::Arr(_) => self.all.iter().any(|q| cmp_matches(Cmp::Eq, v, q)),
            _ => self.others.iter().any(|q| cmp_matches(Cmp::Eq, v, q)),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Condition {
    /// `None`: a `regex` key that names no model field (raw Mongo query: matches nothing).
    pub path: Option<FieldPath>,
    pub test: Test,
}

fn cmp_matches(op: Cmp, field: &Bson, q: &Bson) -> bool {
    let single = |x: &Bson| -> bool {
        match op {
            // `Ne` is the negation of `Eq` over the whole field, handled below.
            Cmp::Eq | Cmp::Ne => x.eq_query(q),
            Cmp::Lt | Cmp::Lte | Cmp::Gt | Cmp::Gte => {
                if q.is_nullish() {
                    return matches!(op, Cmp::Lte | Cmp::Gte) && x.is_nullish();
                }
                if x.is_nullish()
                    || std::mem::discriminant(&rank_bracket(x))
                        != std::mem::discriminant(&rank_bracket(q))
                {
                    return false;
                }
                op.holds(x.cmp_bson(q))
            }
        }
    };
    match op {
        Cmp::Ne => !cmp_matches(Cmp::Eq, field, q),
        _ => match field {
            Bson::Arr(items) => single(field) || items.iter().any(single),
            _ => single(field),
        },
    }
}

#[derive(PartialEq)]
enum Bracket {
    Null,
    Num,
    Str,
    Obj,
    Arr,
    Bool,
    Date,
}

fn rank_bracket(v: &Bson) -> Bracket {
    match v {
        Bson::Missing | Bson::Null => Bracket::Null,
        Bson::Int(_) | Bson::Float(_) => Bracket::Num,
        Bson::Str(_) => Bracket::Str,
        Bson::Obj(_) => Bracket::Obj,
        Bson::Arr(_) => Bracket::Arr,
        Bson::Bool(_) => Bracket::Bool,
        Bson::Date(_) => Bracket::Date,
    }
}
fn regex_any(field: &Bson, patterns: &[Regex]) -> bool {
    match field {
        Bson::Str(s) => patterns.iter().any(|p| p.is_match(s.as_ref())),
        Bson::Arr(items) => items.iter().any(|i| regex_any(i, patterns)),
        _ => false,
    }
}

impl Condition {
    #[inline]
    pub(crate) fn matches(&self, r: &Record) -> bool {
        let Some(path) = &self.path else { return false };
        if let Test::Interned(a) = &self.test {
            return match (path.field.column(), a) {
                (Column::Domain, Some(a)) => Arc::ptr_eq(&r.domain, a),
                (Column::Interned(k), Some(a)) => r.str_at(k).is_some_and(|s| Arc::ptr_eq(s, a)),
                _ => false,
            };
        }
        // Fast paths for the common shapes on scalar model fields (no allocation).
        if path.sub.is_empty() {
            if let Test::Cmp(Cmp::Eq, Bson::Str(q)) = &self.test {
                match path.field.column() {
                    Column::Status(s) => return s.name(r.status) == q.as_ref(),
                    Column::Domain => return r.domain.as_ref() == q.as_ref(),
                    Column::Interned(k) if path.field.def().posted => {
                        return r.str_at(k).is_some_and(|s| s.as_ref() == q.as_ref());
                    }
                    Column::Id => return r.id.as_ref() == q.as_ref(),
                    _ => {}
                }
            }
            if let (Column::Status(s), Test::In(items)) = (path.field.column(), &self.test) {
                return items.strs.contains(s.name(r.status));
            }
        }
        let v = r.get(path);
        match &self.test {
            Test::Cmp(op, q) => cmp_matches(*op, &v, q),
            Test::In(items) => items.any_eq(&v),
            Test::NotIn(items) => !items.any_eq(&v),
            Test::Exists(want) => !matches!(v, Bson::Missing) == *want,
            Test::Regex(p) => regex_any(&v, p),
            Test::NotRegex(p) => p
                .iter()
                .any(|one| !regex_any(&v, std::slice::from_ref(one))),
            Test::ElemMatch(parts) => match &v {
                Bson::Arr(items) => items.iter().any(|item| {
                    parts
                        .iter()
                        .all(|(sub, op, q)| cmp_matches(*op, &item.path(sub), q))
                }),
                _ => false,
            },
            Test::Never | Test::Interned(_) => false,
        }
    }
}

/// An `eq` on an interned field: the index's copy of the value (`None`: no record holds it).
pub(crate) type InternedEq<'a> = (Field, Option<&'a Arc<str>>);

/// `AND(filter...) AND OR(filter_or...)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub and: Vec<Condition>,
    pub or: Vec<Condition>,
}

impl Condition {
    fn bound(&self, interned: &impl Fn(&str) -> Option<Arc<str>>) -> Condition {
        if let (Some(path), Test::Cmp(Cmp::Eq, Bson::Str(q))) = (&self.path, &self.test)
            && path.sub.is_empty()
            && path.field.posting().is_some()
        {
            return Condition {
                path: self.path.clone(),
                test: Test::Interned(interned(q)),
            };
        }
        self.clone()
    }
}

impl Condition {
    /// Units of work one test costs (for the time budget's clock).
    fn cost(&self) -> usize {
        match &self.test {
            Test::In(v) | Test::NotIn(v) => match &v.others.len() {
                0 => 1,
                n => *n,
            },
            // A PikeVM's work per byte grows with its automaton.
            Test::Regex(p) | Test::NotRegex(p) => p.iter().fold(0, |n: usize, r| {
                n.saturating_add(r.memory_usage() / 256).saturating_add(1)
            }),
            Test::ElemMatch(p) => p.len(),
            _ => 0,
        }
        .saturating_add(1)
    }
}

impl Filter {
    /// Units of work testing one record costs (at least 1).
    pub(crate) fn cost(&self) -> usize {
        self.and
            .iter()
            .chain(&self.or)
            .fold(1, |n: usize, c| n.saturating_add(c.cost()))
    }

    /// The same filter with string equalities on interned fields resolved by `interned` (an
    /// index's shared copy of a string, if any record holds it).
    pub(crate) fn bound(&self, interned: &impl Fn(&str) -> Option<Arc<str>>) -> Filter {
        Filter {
            and: self.and.iter().map(|c| c.bound(interned)).collect(),
            or: self.or.iter().map(|c| c.bound(interned)).collect(),
        }
    }

    /// Splits a bound filter into its AND-ed `eq` conditions on interned fields (the index's copy
    /// of the value; `None`: no record holds it, so nothing matches) and the conditions left to
    /// test on the records.
    pub(crate) fn split_interned(&self) -> (Vec<InternedEq<'_>>, Filter) {
        let mut eqs = Vec::new();
        let mut rest = Vec::new();
        for c in &self.and {
            match (&c.path, &c.test) {
                (Some(path), Test::Interned(v)) if path.sub.is_empty() => {
                    eqs.push((path.field, v.as_ref()));
                }
                _ => rest.push(c.clone()),
            }
        }
        let rest = Filter {
            and: rest,
            or: self.or.clone(),
        };
        (eqs, rest)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.and.is_empty() && self.or.is_empty()
    }

    /// Splits the AND-ed `eq` and `in` conditions on the status out of a filter, as the set of
    /// stored ordinals they all admit (bit `i`: ordinal `i`; `None`: no such condition), so a plan
    /// tests them on the packed per-slot fields. The conditions left are the filter returned.
    pub(crate) fn split_status(self) -> (Option<u32>, Filter) {
        let mut mask: Option<u32> = None;
        let mut rest = Vec::with_capacity(self.and.len());
        for c in self.and {
            let admitted = match (&c.path, &c.test) {
                (Some(p), test) if p.sub.is_empty() => match (p.field.column(), test) {
                    (Column::Status(s), Test::Cmp(Cmp::Eq, Bson::Str(q))) => {
                        Some(s.mask(|name| name == q.as_ref()))
                    }
                    (Column::Status(s), Test::In(values)) => {
                        Some(s.mask(|name| values.strs.contains(name)))
                    }
                    _ => None,
                },
                _ => None,
            };
            match admitted {
                Some(m) => mask = Some(mask.unwrap_or(u32::MAX) & m),
                None => rest.push(c),
            }
        }
        let rest = Filter {
            and: rest,
            or: self.or,
        };
        (mask, rest)
    }

    #[inline]
    pub(crate) fn matches(&self, r: &Record) -> bool {
        self.and.iter().all(|c| c.matches(r))
            && (self.or.is_empty() || self.or.iter().any(|c| c.matches(r)))
    }
}
