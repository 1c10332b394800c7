//! The hash of values: crafted values do not collide, equal values hash alike.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::HashSet;

use super::*;

/// Every ordered tree of up to `nodes` nodes, as values built of nothing but empty arrays
/// (`[]`, `[[]]`, `[[],[]]`, `[[[]]]`, ...): all distinct, and the shape the review flooded
/// the old hash with.
fn empty_array_trees(nodes: usize) -> Vec<Val> {
    // forests[n]: every ordered forest of n nodes.
    let mut forests: Vec<Vec<Vec<Val>>> = vec![vec![Vec::new()]];
    for n in 1..nodes {
        let mut all = Vec::new();
        // The first tree takes k + 1 nodes (a root over a forest of k), the rest n - k - 1.
        for k in 0..n {
            for inner in &forests[k] {
                for rest in &forests[n - k - 1] {
                    let mut f = vec![Val::Arr(inner.clone())];
                    f.extend(rest.iter().cloned());
                    all.push(f);
                }
            }
        }
        forests.push(all);
    }
    forests.into_iter().flatten().map(Val::Arr).collect()
}

#[test]
fn crafted_empty_array_values_do_not_collide() {
    let values = empty_array_trees(10);
    assert!(values.len() > 5_000, "{}", values.len());
    let hasher = RandomState::new();
    let hashes: HashSet<u64> = values.iter().map(|v| hasher.hash_one(Hashed(v))).collect();
    assert_eq!(hashes.len(), values.len(), "one hash per distinct value");
    let keys: HashSet<u64> = values
        .iter()
        .map(|v| hasher.hash_one(Key(vec![v.clone()])))
        .collect();
    assert_eq!(keys.len(), values.len(), "group keys: one hash per value");
    let mut set = Dedup::default();
    for v in &values {
        assert!(set.insert(v.clone(), |x, v| x.cmp_bson(v).is_eq()));
    }
    assert!(set.longest_chain() <= 2, "{}", set.longest_chain());
    for v in &values {
        assert!(!set.insert(v.clone(), |x, v| x.cmp_bson(v).is_eq()));
    }
}

#[test]
fn equal_values_hash_alike() {
    let hasher = RandomState::new();
    let h = |v: &Val| hasher.hash_one(Hashed(v));
    let same = [
        (Val::Int(2), Val::Float(2.0)),
        (Val::Float(0.0), Val::Float(-0.0)),
        (Val::Float(f64::NAN), Val::Float(-f64::NAN)),
        (Val::Null, Val::Missing),
        (
            Val::Arr(vec![Val::Int(1), Val::Null]),
            Val::Arr(vec![Val::Float(1.0), Val::Missing]),
        ),
        (
            Val::Obj(vec![(Arc::from("a"), Val::Int(3))]),
            Val::Obj(vec![(Arc::from("a"), Val::Float(3.0))]),
        ),
    ];
    for (a, b) in &same {
        assert!(a.cmp_bson(b).is_eq(), "{a:?} {b:?}");
        assert_eq!(h(a), h(b), "{a:?} {b:?}");
    }
    // Values that only a length or a type tag tells apart.
    let apart = [
        (Val::str("ab"), Val::Arr(vec![Val::str("a"), Val::str("b")])),
        (
            Val::Arr(vec![Val::str("ab"), Val::str("")]),
            Val::Arr(vec![Val::str("a"), Val::str("b")]),
        ),
        (
            Val::Arr(vec![Val::Arr(vec![]), Val::Int(1)]),
            Val::Arr(vec![Val::Arr(vec![Val::Int(1)])]),
        ),
        (
            Val::Obj(vec![(Arc::from("a"), Val::Arr(vec![]))]),
            Val::Arr(vec![Val::str("a")]),
        ),
        (Val::Bool(true), Val::Int(1)),
        (Val::Date(1), Val::Int(1)),
        (Val::Null, Val::Arr(vec![])),
    ];
    for (a, b) in &apart {
        assert_ne!(h(a), h(b), "{a:?} {b:?}");
    }
}
