//! Running a built pipeline: documents flow through the typed stages in order, within the
//! stage limits of the query's budget.

use std::sync::Arc;

use super::group::group;
use super::needs::Needs;
use super::parse::{ProjectRule, Stage};
use super::rows::{
    Output, P, Pipeline, Rendered, Row, Source, bson_type, charge, over, raw, units,
};
use crate::error::Error;
use crate::limits::{Budget, StageUse};
use crate::message::Page;
use crate::schema::Schema;
use crate::value::Bson;

/// Runs the built stages over `recs`, then takes the page.
pub(super) fn run<'a>(
    recs: Source<'a>,
    ordered: bool,
    stages: &[Stage],
    page: &Page,
    budget: &'a Budget<'a>,
    schema: &'static Schema,
) -> Result<Output, Error> {
    let mut p = Pipeline {
        recs: Some(recs),
        rows: Vec::new(),
        ordered,
        budget,
        schema,
    };
    for (i, stage) in stages.iter().enumerate() {
        if !matches!(stage, Stage::Group { .. } | Stage::Count { .. }) {
            p.materialize()?;
        }
        match stage {
            Stage::Unwind { path, parts } => {
                let later = stages.get(i.saturating_add(1)..).unwrap_or_default();
                // The unwound path kept too, so each element lands where the array was.
                let needs = Needs::after(later).map(|mut n| {
                    n.keep_path(parts);
                    n
                });
                unwind(&mut p, path, parts, needs.as_ref())?
            }
            Stage::Group { keys, fields } => group(&mut p, keys, fields)?,
            Stage::Count { name } => count(&mut p, name)?,
            Stage::Sort(keys) => sort(&mut p, keys)?,
            Stage::Project { rules, exclude } => project(&mut p, rules, *exclude)?,
            Stage::Limit(n) => p.rows.truncate(*n),
            Stage::Skip(n) => {
                let n = (*n).min(p.rows.len());
                p.rows.drain(..n);
            }
        }
    }
    p.materialize()?;
    let total = p.rows.len();
    let (rows, total) = match page.window(total) {
        Some((s, e)) => (p.rows.drain(s..e).collect::<Vec<_>>(), Some(total)),
        None => (p.rows, None),
    };
    Ok((
        rows.into_iter()
            .map(|r| Rendered::Row(r.into_doc(schema)))
            .collect(),
        total,
    ))
}

/// `needs`: what later stages read of the documents ([`Needs::after`]); each copy keeps only that.
fn unwind(
    p: &mut Pipeline<'_>,
    path: &str,
    parts: &[String],
    needs: Option<&Needs>,
) -> Result<(), Error> {
    let keep = |doc: Bson| match needs {
        Some(n) => n.prune(doc),
        None => doc,
    };
    // What is read of each element: the whole element when the path (or a prefix) is read whole.
    let of_item = needs.and_then(|n| n.below(parts));
    let mut out = Vec::new();
    let mut stage = StageUse::new(p.budget, "unwind");
    let budget = p.budget;
    let schema = p.schema;
    let at = P::within(schema, path, budget)?;
    for row in std::mem::take(&mut p.rows) {
        let value = row.at(&at);
        charge(budget, &value)?;
        match value {
            Bson::Arr(items) => {
                // The array leaves the document first: each output row is then a copy of the rest
                // plus its own element, and is charged exactly that (what MongoDB's limit counts),
                // not a copy of the whole array per element.
                let rest = keep(set_path(row.into_doc(schema), parts, Bson::Null));
                let rest_bytes = rest.approx_bytes();
                let rest_units = units(&rest);
                for item in items {
                    let item = match of_item {
                        Some(n) => n.prune(item),
                        None => item,
                    };
                    budget.work(rest_units).map_err(over)?;
                    stage
                        .reserve(1, rest_bytes.saturating_add(item.approx_bytes()))
                        .map_err(over)?;
                    out.push(Row::Doc(set_path(rest.clone(), parts, item)));
                }
            }
            Bson::Missing | Bson::Null => {}
            _ => {
                let doc = keep(row.into_doc(schema));
                stage.reserve(1, doc.approx_bytes()).map_err(over)?;
                out.push(Row::Doc(doc));
            }
        }
    }
    p.rows = out;
    Ok(())
}

fn set_path(doc: Bson, parts: &[String], value: Bson) -> Bson {
    let Some((first, rest)) = parts.split_first() else {
        return value;
    };
    match doc {
        Bson::Obj(mut fields) => {
            if let Some(slot) = fields
                .iter_mut()
                .find(|(k, _)| k.as_ref() == first.as_str())
            {
                let inner = std::mem::replace(&mut slot.1, Bson::Null);
                slot.1 = set_path(inner, rest, value);
            } else {
                fields.push((
                    Arc::from(first.as_str()),
                    set_path(Bson::Obj(Vec::new()), rest, value),
                ));
            }
            Bson::Obj(fields)
        }
        other => other,
    }
}

fn count(p: &mut Pipeline<'_>, name: &str) -> Result<(), Error> {
    // Stored records are counted where they are, never gathered.
    let n = match p.recs.take() {
        Some(recs) => recs.count(p.budget)?,
        None => p.rows.len(),
    };
    p.rows = if n == 0 {
        Vec::new()
    } else {
        vec![Row::Doc(Bson::Obj(vec![(
            Arc::from(name),
            Bson::Int(n as i64),
        )]))]
    };
    Ok(())
}

fn sort(p: &mut Pipeline<'_>, keys: &[(String, bool)]) -> Result<(), Error> {
    let mut stage = StageUse::new(p.budget, "sort");
    let budget = p.budget;
    let at = keys
        .iter()
        .map(|(k, _)| P::within(p.schema, k, budget))
        .collect::<Result<Vec<_>, _>>()?;
    let mut decorated: Vec<(Vec<Bson>, Row<'_>)> = Vec::with_capacity(p.rows.len());
    for r in std::mem::take(&mut p.rows) {
        let mut k = Vec::with_capacity(at.len());
        for a in &at {
            let v = r.at(a);
            charge(budget, &v)?;
            k.push(v);
        }
        let bytes = k
            .iter()
            .fold(0, |n: usize, v| n.saturating_add(v.approx_bytes()));
        stage.reserve(1, bytes).map_err(over)?;
        decorated.push((k, r));
    }
    // The sort itself is not interruptible; its input is bounded by max_stage_rows.
    decorated.sort_by(|(a, _), (b, _)| {
        for ((x, y), (_, desc)) in a.iter().zip(b).zip(keys) {
            let o = x.cmp_bson(y);
            let o = if *desc { o.reverse() } else { o };
            if !o.is_eq() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    p.rows = decorated.into_iter().map(|(_, r)| r).collect();
    Ok(())
}

fn project(p: &mut Pipeline<'_>, rules: &[ProjectRule], exclude: bool) -> Result<(), Error> {
    let mut out = Vec::with_capacity(p.rows.len());
    let mut stage = StageUse::new(p.budget, "project");
    let budget = p.budget;
    let id = P::new(p.schema, "_id");
    let at = rules
        .iter()
        .map(|(_, key, _)| P::within(p.schema, key, budget))
        .collect::<Result<Vec<_>, _>>()?;
    for row in std::mem::take(&mut p.rows) {
        let mut fields: Vec<(Arc<str>, Bson)> = Vec::new();
        if !exclude {
            let v = row.at(&id);
            charge(budget, &v)?;
            fields.push((Arc::from("_id"), v));
        }
        for ((name, _, op), key) in rules.iter().zip(&at) {
            let v = row.at(key);
            charge(budget, &v)?;
            let v = match op.as_deref() {
                None => v,
                Some("size") => match v {
                    Bson::Arr(a) => Bson::Int(a.len() as i64),
                    other => {
                        return Err(raw(format!(
                            "The argument to $size must be an array. Type of argument: {}",
                            bson_type(&other)
                        )));
                    }
                },
                Some("sum") => match v {
                    Bson::Arr(a) => Bson::Float(a.iter().filter_map(Bson::as_f64).sum()),
                    other => Bson::Float(other.as_f64().unwrap_or(0.0)),
                },
                Some("array_to_object") => array_to_object(v)?,
                Some(_) => object_to_array(v)?,
            };
            fields.push((Arc::from(name.as_str()), v));
        }
        let doc = Bson::Obj(fields);
        stage.reserve(1, doc.approx_bytes()).map_err(over)?;
        out.push(Row::Doc(doc));
    }
    p.rows = out;
    Ok(())
}

fn array_to_object(v: Bson) -> Result<Bson, Error> {
    match v {
        Bson::Null | Bson::Missing => Ok(Bson::Null),
        Bson::Arr(items) => {
            let mut out: Vec<(Arc<str>, Bson)> = Vec::new();
            for item in items {
                let (k, v) = match item {
                    Bson::Arr(mut pair) if pair.len() == 2 => {
                        let v = pair.pop().unwrap_or(Bson::Null);
                        (pair.pop().unwrap_or(Bson::Null), v)
                    }
                    Bson::Obj(o) => (item_field(&o, "k"), item_field(&o, "v")),
                    _ => return Err(raw("$arrayToObject requires an array of key-value pairs")),
                };
                let Bson::Str(k) = k else {
                    return Err(raw("$arrayToObject requires an object keys of type string"));
                };
                match out.iter_mut().find(|(ok, _)| *ok == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
            Ok(Bson::Obj(out))
        }
        other => Err(raw(format!(
            "$arrayToObject requires an array input, found: {}",
            bson_type(&other)
        ))),
    }
}

fn item_field(o: &[(Arc<str>, Bson)], name: &str) -> Bson {
    o.iter()
        .find(|(k, _)| k.as_ref() == name)
        .map_or(Bson::Missing, |(_, v)| v.clone())
}

fn object_to_array(v: Bson) -> Result<Bson, Error> {
    match v {
        Bson::Null | Bson::Missing => Ok(Bson::Null),
        Bson::Obj(o) => Ok(Bson::Arr(
            o.into_iter()
                .map(|(k, v)| Bson::Obj(vec![(Arc::from("k"), Bson::Str(k)), (Arc::from("v"), v)]))
                .collect(),
        )),
        other => Err(raw(format!(
            "$objectToArray requires a document input, found: {}",
            bson_type(&other)
        ))),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::limits::Limits;

    /// The budget sees the work inside a row: projecting a value of 5,000 numbers counts about
    /// 5,000 units per row, not one per row, so the clock is read within the first row of such
    /// values rather than after 4,096 of them.
    #[test]
    fn projecting_a_large_value_counts_its_values() {
        let limits = Limits::default();
        let budget = Budget::new(&limits);
        let big = Bson::Arr((0..5_000).map(Bson::Int).collect());
        let doc = Bson::Obj(vec![(Arc::from("big"), big)]);
        let mut p = Pipeline {
            recs: None,
            rows: vec![Row::Doc(doc.clone()), Row::Doc(doc)],
            ordered: true,
            budget: &budget,
            schema: &crate::model::JOB,
        };
        let rules = vec![(String::from("x"), String::from("big"), None)];
        project(&mut p, &rules, true).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert!(budget.worked() >= 10_000, "{}", budget.worked());
    }
}
