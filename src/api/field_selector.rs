//! Field selectors on the aggregated API's `jobs`: the fields a `CostAnalysisJob` can be selected
//! by (its metadata plus the CRD's selectable fields, under the same names), so that one selector
//! works on `caj` and on `jobs.query.cost-analysis.spaceone.dev`. Any other field is refused, as
//! kube-apiserver refuses it.

use spaceone_query::Job;

/// The fields a selector may name: `metadata.name`, `metadata.namespace` and the CRD's
/// `selectableFields`.
pub const FIELDS: [&str; 5] = [
    "metadata.name",
    "metadata.namespace",
    "spec.domainId",
    "spec.dataSourceId",
    "status.status",
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    field: &'static str,
    equal: bool,
    value: String,
}

/// Why a selector was refused; `Unsupported` names the field.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldError {
    Invalid(String),
    Unsupported(String),
}

impl FieldSelector {
    /// Parses `a=b,c!=d` (`==` is `=`; `\,`, `\=` and `\\` escape those characters in values).
    pub fn parse(input: &str) -> Result<FieldSelector, FieldError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = split_op(&term, "!=") {
                (f, false, v)
            } else if let Some((f, v)) = split_op(&term, "==") {
                (f, true, v)
            } else if let Some((f, v)) = split_op(&term, "=") {
                (f, true, v)
            } else {
                return Err(FieldError::Invalid(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            let Some(known) = FIELDS.iter().find(|f| **f == field) else {
                return Err(FieldError::Unsupported(field.to_string()));
            };
            requirements.push(Requirement {
                field: known,
                equal,
                value: unescape(value.trim()),
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, job: &Job) -> bool {
        self.requirements.iter().all(|r| {
            let actual = match r.field {
                "metadata.name" => job.job_id.as_str(),
                "metadata.namespace" => job.namespace.as_str(),
                "spec.domainId" => job.domain_id.as_str(),
                "spec.dataSourceId" => job.data_source_id.as_str(),
                _ => job.status.as_str(),
            };
            (actual == r.value) == r.equal
        })
    }
}

/// Splits at `sep` where it is not escaped by a backslash; escapes stay in the parts.
fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in input.chars() {
        if !escaped && c == sep {
            parts.push(String::new());
            continue;
        }
        escaped = !escaped && c == '\\';
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// The field and the value around the first unescaped `op`.
fn split_op<'a>(term: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if !escaped && term.get(i..).is_some_and(|rest| rest.starts_with(op)) {
            let value = term.get(i.saturating_add(op.len())..)?;
            return Some((term.get(..i)?, value));
        }
        escaped = !escaped && c == '\\';
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects
    )]
    use super::*;

    fn job(name: &str, status: spaceone_query::JobStatus) -> Job {
        Job {
            namespace: "ns".into(),
            job_id: name.into(),
            status,
            error_code: None,
            error_message: None,
            total_tasks: 0,
            remained_tasks: 0,
            data_source_id: "ds,1".into(),
            domain_id: "d1".into(),
            options: serde_json::Map::new(),
            created_at: None,
            updated_at: None,
            finished_at: None,
            last_changed_at: None,
        }
    }

    #[test]
    fn selects_by_every_supported_field() {
        use spaceone_query::JobStatus::{Failure, Success};
        let (a, b) = (job("a", Failure), job("b", Success));
        let sel = |s: &str| FieldSelector::parse(s).map_err(|e| format!("{e:?}"));
        assert_eq!(
            sel("status.status=FAILURE").map(|f| f.matches(&a)),
            Ok(true)
        );
        assert_eq!(
            sel("status.status=FAILURE").map(|f| f.matches(&b)),
            Ok(false)
        );
        assert_eq!(
            sel("status.status!=FAILURE").map(|f| f.matches(&b)),
            Ok(true)
        );
        assert_eq!(
            sel("metadata.name==a,spec.domainId=d1").map(|f| f.matches(&a)),
            Ok(true)
        );
        assert_eq!(
            sel("metadata.namespace=ns,metadata.name=b").map(|f| f.matches(&a)),
            Ok(false)
        );
        assert_eq!(
            sel(r"spec.dataSourceId=ds\,1").map(|f| f.matches(&a)),
            Ok(true)
        );
        assert_eq!(sel("").map(|f| f.is_empty()), Ok(true));
    }

    #[test]
    fn unknown_fields_and_garbage_are_refused() {
        assert_eq!(
            FieldSelector::parse("foo=bar"),
            Err(FieldError::Unsupported("foo".into()))
        );
        assert_eq!(
            FieldSelector::parse("status.status=A,spec.tasks=x"),
            Err(FieldError::Unsupported("spec.tasks".into()))
        );
        assert!(matches!(
            FieldSelector::parse("status.status"),
            Err(FieldError::Invalid(_))
        ));
        assert!(FieldSelector::parse("é=é,\\=\\,").is_err());
    }
}
