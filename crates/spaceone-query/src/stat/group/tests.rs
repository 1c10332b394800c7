//! The hash of values: crafted values do not collide, equal values hash alike.

#![allow(clippy::arithmetic_side_effects)]

use std::collections::HashSet;

use super::*;

/// Every ordered tree of up to `nodes` nodes, as values built of nothing but empty arrays
/// (`[]`, `[[]]`, `[[],[]]`, `[[[]]]`, ...): all distinct, and the shape the review flooded
/// the old hash with.
fn empty_array_trees(nodes: usize) -> Vec<Bson> {
    // forests[n]: every ordered forest of n nodes.
    let mut forests: Vec<Vec<Vec<Bson>>> = vec![vec![Vec::new()]];
    for n in 1..nodes {
        let mut all = Vec::new();
        // The first tree takes k + 1 nodes (a root over a forest of k), the rest n - k - 1.
        for k in 0..n {
            for inner in &forests[k] {
                for rest in &forests[n - k - 1] {
                    let mut f = vec![Bson::Arr(inner.clone())];
                    f.extend(rest.iter().cloned());
                    all.push(f);
                }
            }
        }
        forests.push(all);
    }
    forests.into_iter().flatten().map(Bson::Arr).collect()
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
    let h = |v: &Bson| hasher.hash_one(Hashed(v));
    let same = [
        (Bson::Int(2), Bson::Float(2.0)),
        (Bson::Float(0.0), Bson::Float(-0.0)),
        (Bson::Float(f64::NAN), Bson::Float(-f64::NAN)),
        (Bson::Null, Bson::Missing),
        (
            Bson::Arr(vec![Bson::Int(1), Bson::Null]),
            Bson::Arr(vec![Bson::Float(1.0), Bson::Missing]),
        ),
        (
            Bson::Obj(vec![(Arc::from("a"), Bson::Int(3))]),
            Bson::Obj(vec![(Arc::from("a"), Bson::Float(3.0))]),
        ),
    ];
    for (a, b) in &same {
        assert!(a.cmp_bson(b).is_eq(), "{a:?} {b:?}");
        assert_eq!(h(a), h(b), "{a:?} {b:?}");
    }
    // Values that only a length or a type tag tells apart.
    let apart = [
        (
            Bson::str("ab"),
            Bson::Arr(vec![Bson::str("a"), Bson::str("b")]),
        ),
        (
            Bson::Arr(vec![Bson::str("ab"), Bson::str("")]),
            Bson::Arr(vec![Bson::str("a"), Bson::str("b")]),
        ),
        (
            Bson::Arr(vec![Bson::Arr(vec![]), Bson::Int(1)]),
            Bson::Arr(vec![Bson::Arr(vec![Bson::Int(1)])]),
        ),
        (
            Bson::Obj(vec![(Arc::from("a"), Bson::Arr(vec![]))]),
            Bson::Arr(vec![Bson::str("a")]),
        ),
        (Bson::Bool(true), Bson::Int(1)),
        (Bson::Date(1), Bson::Int(1)),
        (Bson::Null, Bson::Arr(vec![])),
    ];
    for (a, b) in &apart {
        assert_ne!(h(a), h(b), "{a:?} {b:?}");
    }
}

/// A group key whose field is missing is another group than one whose field is null (SpaceONE
/// groups on a document, in which a missing field is left out); 2 and 2.0 stay one key.
#[test]
fn a_missing_key_is_not_a_null_key() {
    let hasher = RandomState::new();
    let (missing, null) = (Key(vec![Bson::Missing]), Key(vec![Bson::Null]));
    assert_ne!(missing, null);
    assert_eq!(missing, Key(vec![Bson::Missing]));
    assert_eq!(
        hasher.hash_one(&missing),
        hasher.hash_one(Key(vec![Bson::Missing]))
    );
    assert_eq!(Key(vec![Bson::Int(2)]), Key(vec![Bson::Float(2.0)]));
    assert_eq!(
        hasher.hash_one(Key(vec![Bson::Int(2)])),
        hasher.hash_one(Key(vec![Bson::Float(2.0)]))
    );
}
