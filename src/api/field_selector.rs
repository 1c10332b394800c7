//! Field selectors on the aggregated API's `jobs` and `jobtasks`: the fields a `CostAnalysisJob`
//! (or `CostAnalysisJobTask`) can be selected by (its metadata plus the CRD's selectable fields,
//! under the same names), so that one selector works on `caj` and on
//! `jobs.query.cost-analysis.spaceone.dev`, on `cajt` and on `jobtasks.query...`. Any other field
//! is refused, as kube-apiserver refuses it.

use spaceone_query::{Job, JobTask};

/// A record a field selector can select: the fields it may name (`metadata.name`,
/// `metadata.namespace` and its CRD's `selectableFields`) and their values.
pub trait Selectable {
    const FIELDS: &'static [&'static str];
    /// The value of `field`, one of [`Self::FIELDS`].
    fn field(&self, field: &str) -> &str;
}

impl Selectable for Job {
    const FIELDS: &'static [&'static str] = &[
        "metadata.name",
        "metadata.namespace",
        "spec.domainId",
        "spec.dataSourceId",
        "status.status",
    ];

    fn field(&self, field: &str) -> &str {
        match field {
            "metadata.name" => &self.job_id,
            "metadata.namespace" => &self.namespace,
            "spec.domainId" => &self.domain_id,
            "spec.dataSourceId" => &self.data_source_id,
            _ => self.status.as_str(),
        }
    }
}

impl Selectable for JobTask {
    const FIELDS: &'static [&'static str] = &[
        "metadata.name",
        "metadata.namespace",
        "spec.jobName",
        "status.status",
    ];

    fn field(&self, field: &str) -> &str {
        match field {
            "metadata.name" => &self.job_task_id,
            "metadata.namespace" => &self.namespace,
            "spec.jobName" => &self.job_id,
            _ => self.status.as_str(),
        }
    }
}

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
    /// Parses `a=b,c!=d` over a job's fields (see [`Self::parse_for`]).
    pub fn parse(input: &str) -> Result<FieldSelector, FieldError> {
        Self::parse_for::<Job>(input)
    }

    /// Parses `a=b,c!=d` over the fields of `R` (`==` is `=`; `\,`, `\=` and `\\` escape those
    /// characters in values).
    pub fn parse_for<R: Selectable>(input: &str) -> Result<FieldSelector, FieldError> {
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
            let Some(known) = R::FIELDS.iter().find(|f| **f == field) else {
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

    /// Whether `record` meets every requirement (the selector must have been parsed for `R`).
    pub fn matches<R: Selectable>(&self, record: &R) -> bool {
        self.requirements
            .iter()
            .all(|r| (record.field(r.field) == r.value) == r.equal)
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
    fn tasks_select_by_the_task_crds_fields() {
        let task = JobTask {
            namespace: "ns".into(),
            job_task_id: "job-a1.t".into(),
            status: spaceone_query::JobTaskStatus::Failure,
            options: serde_json::Map::new(),
            created_count: 0,
            error_code: None,
            error_message: None,
            job_id: "job-a1".into(),
            data_source_id: "ds-1".into(),
            domain_id: "d1".into(),
            created_at: None,
            started_at: None,
            finished_at: None,
        };
        let sel = |s: &str| FieldSelector::parse_for::<JobTask>(s).map_err(|e| format!("{e:?}"));
        let on = |s: &str| sel(s).map(|f| f.matches(&task));
        assert_eq!(on("spec.jobName=job-a1,status.status=FAILURE"), Ok(true));
        assert_eq!(on("metadata.name=job-a1.t,metadata.namespace=ns"), Ok(true));
        assert_eq!(on("spec.jobName!=job-a1"), Ok(false));
        assert_eq!(on("status.status=PENDING"), Ok(false));
        assert_eq!(
            FieldSelector::parse_for::<JobTask>("spec.domainId=d1"),
            Err(FieldError::Unsupported("spec.domainId".into()))
        );
        assert!(FieldSelector::parse("spec.jobName=job-a1").is_err());
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
