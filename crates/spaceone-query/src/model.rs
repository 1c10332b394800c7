//! The job record: the seed's Job (spaceone-cost-analysis 1.8.7) plus the Kubernetes namespace and
//! the free-form `options` object the custom resource carries.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// SpaceONE's job states, as the Job API and the `CostAnalysisJob` status spell them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    InProgress,
    Success,
    Failure,
    Timeout,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::InProgress,
        JobStatus::Success,
        JobStatus::Failure,
        JobStatus::Timeout,
        JobStatus::Canceled,
    ];

    /// Every state but IN_PROGRESS is final.
    pub fn is_terminal(self) -> bool {
        self != JobStatus::InProgress
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Success => "SUCCESS",
            JobStatus::Failure => "FAILURE",
            JobStatus::Timeout => "TIMEOUT",
            JobStatus::Canceled => "CANCELED",
        }
    }
}

impl std::str::FromStr for JobStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        JobStatus::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Kubernetes namespace ("" for jobs read from a JSON file); not part of JobInfo.
    pub namespace: String,
    pub job_id: String,
    pub status: JobStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub total_tasks: i64,
    pub remained_tasks: i64,
    pub data_source_id: String,
    pub domain_id: String,
    pub options: Map<String, Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_changed_at: Option<DateTime<Utc>>,
}

/// The fields a query may name, with their mongoengine types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    JobId,
    Status,
    ErrorCode,
    ErrorMessage,
    TotalTasks,
    RemainedTasks,
    DataSourceId,
    DomainId,
    Options,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
    LastChangedAt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Str,
    Int,
    Date,
    Dict,
}

impl Field {
    /// In the model's declaration order (the order raw documents show).
    pub const ALL: [Field; 13] = [
        Field::JobId,
        Field::Status,
        Field::Options,
        Field::ErrorCode,
        Field::ErrorMessage,
        Field::TotalTasks,
        Field::RemainedTasks,
        Field::DataSourceId,
        Field::DomainId,
        Field::CreatedAt,
        Field::UpdatedAt,
        Field::FinishedAt,
        Field::LastChangedAt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::JobId => "job_id",
            Field::Status => "status",
            Field::ErrorCode => "error_code",
            Field::ErrorMessage => "error_message",
            Field::TotalTasks => "total_tasks",
            Field::RemainedTasks => "remained_tasks",
            Field::DataSourceId => "data_source_id",
            Field::DomainId => "domain_id",
            Field::Options => "options",
            Field::CreatedAt => "created_at",
            Field::UpdatedAt => "updated_at",
            Field::FinishedAt => "finished_at",
            Field::LastChangedAt => "last_changed_at",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn ty(self) -> FieldType {
        match self {
            Field::TotalTasks | Field::RemainedTasks => FieldType::Int,
            Field::CreatedAt | Field::UpdatedAt | Field::FinishedAt | Field::LastChangedAt => {
                FieldType::Date
            }
            Field::Options => FieldType::Dict,
            _ => FieldType::Str,
        }
    }
}

/// A key as a query names it: a model field plus, for `options`, a dotted sub-path.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldPath {
    pub field: Field,
    pub sub: Vec<String>,
}

impl FieldPath {
    /// Resolves a key; unknown fields are mongoengine's `Cannot resolve field "x"`.
    pub fn resolve(key: &str) -> Result<FieldPath, String> {
        let mut parts = key.split('.');
        let head = parts.next().unwrap_or_default();
        let field = Field::parse(head).ok_or_else(|| format!("Cannot resolve field \"{head}\""))?;
        let sub: Vec<String> = parts.map(str::to_string).collect();
        if !sub.is_empty() && field != Field::Options {
            let first = sub.first().map_or("", String::as_str);
            return Err(format!("Cannot resolve field \"{first}\""));
        }
        Ok(FieldPath { field, sub })
    }
}
