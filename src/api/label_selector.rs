//! Kubernetes label selectors (`app=x,tier!=db,env in (a,b),!legacy`), parsed and matched against a
//! label map. The Kubernetes surface needs them and kube-rs has no parser for the string form.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    pub fn parse(input: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(input)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(Selector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&Labels>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        let among = |vs: &[String], x: &str| vs.iter().any(|v| v == x);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| among(vs, x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !among(vs, x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// An object's labels as the catalogs keep them: sorted pairs in one allocation. A `BTreeMap`
/// allocates a whole node (about 540 bytes) for even one label, and every task carries one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn of(map: &BTreeMap<String, String>) -> Labels {
        Labels(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, v)| v.as_ref())
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth = depth.saturating_add(1),
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unexpected ')' in {input:?}"))?;
            }
            ',' if depth == 0 => {
                parts.push(input.get(start..i).unwrap_or_default());
                // A comma is one byte.
                start = i.saturating_add(1);
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unclosed '(' in {input:?}"));
    }
    parts.push(input.get(start..).unwrap_or_default());
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(valid_key(key.trim())?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEq(
            valid_key(k.trim())?,
            valid_value(v.trim())?,
        ));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Eq(
            valid_key(k.trim())?,
            valid_value(v.trim())?,
        ));
    }
    for (word, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = part.split_once(word) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("expected a (list) after {} in {part:?}", word.trim()))?;
            let values = inner
                .split(',')
                .map(|v| valid_value(v.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let key = valid_key(k.trim())?;
            return Ok(if notin {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    Ok(Requirement::Exists(valid_key(part)?))
}

fn valid_key(k: &str) -> Result<String, String> {
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?}"))
    }
}

fn valid_value(v: &str) -> Result<String, String> {
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("invalid label value {v:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::of(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn parses_and_matches_every_form() {
        let s = Selector::parse(
            "app=cost, tier!=db,env in (prod, stage),region notin (eu),owner,!legacy",
        )
        .expect("valid");
        assert_eq!(s.0.len(), 6);
        let good = labels(&[("app", "cost"), ("env", "prod"), ("owner", "me")]);
        assert!(s.matches(Some(&good)));
        let bad = labels(&[
            ("app", "cost"),
            ("env", "prod"),
            ("owner", "me"),
            ("legacy", "1"),
        ]);
        assert!(!s.matches(Some(&bad)));
        let bad = labels(&[("app", "cost"), ("env", "dev"), ("owner", "me")]);
        assert!(!s.matches(Some(&bad)));
        // Looked up in the sorted pairs, first and last keys included.
        assert_eq!(bad.get("app"), Some("cost"));
        assert_eq!(bad.get("owner"), Some("me"));
        assert_eq!(bad.get("zzz"), None);
        assert_eq!(Labels::of(&bad.to_map()), bad);
        assert!(!s.matches(None));
        assert!(Selector::parse("").expect("empty").matches(None));
        assert!(
            Selector::parse("a==b")
                .expect("==")
                .matches(Some(&labels(&[("a", "b")])))
        );
    }

    #[test]
    fn refuses_malformed_selectors() {
        for bad in ["a in b", "a in (b", "a)(", "=b", "a=b c", "a in (b,c d)"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
