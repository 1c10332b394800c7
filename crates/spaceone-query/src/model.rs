//! The job record: the seed's Job (spaceone-cost-analysis 1.8.7) plus the Kubernetes namespace and
//! the free-form `options` object the custom resource carries.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::schema::{Column, Columns, FieldDef, Resource, Schema, Statuses};

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

// Where a Job keeps its fields (the table below is the one place that says which field is where).
const DATA_SOURCE: usize = 0;
const ERROR_CODE: usize = 1;
const TOTAL: usize = 0;
const REMAINED: usize = 1;
const UPDATED: usize = 2;
const FINISHED: usize = 3;
const LAST_CHANGED: usize = 4;

static JOB_STATUSES: Statuses = Statuses::new(
    &["IN_PROGRESS", "SUCCESS", "FAILURE", "TIMEOUT", "CANCELED"],
    &["IN_PROGRESS", "SUCCESS", "FAILURE", "TIMEOUT", "CANCELED"],
    0,
);

const fn field(name: &'static str, column: Column, info: Option<u32>) -> FieldDef {
    FieldDef {
        name,
        column,
        minimal: false,
        posted: false,
        param: false,
        info,
    }
}

/// The seed's Job model (`model/job_model.py`), in declaration order, with JobInfo's field
/// numbers (spaceone-api 1.8.7); minimal fields: job_id, status, total_tasks, remained_tasks,
/// data_source_id; list parameters: job_id, status, data_source_id, domain_id.
static JOB_FIELDS: [FieldDef; 13] = [
    FieldDef {
        minimal: true,
        param: true,
        ..field("job_id", Column::Id, Some(1))
    },
    FieldDef {
        minimal: true,
        param: true,
        ..field("status", Column::Status(&JOB_STATUSES), Some(2))
    },
    field("options", Column::Options, None),
    field("error_code", Column::Interned(ERROR_CODE), Some(3)),
    field("error_message", Column::Text, Some(4)),
    FieldDef {
        minimal: true,
        ..field("total_tasks", Column::Int(TOTAL), Some(5))
    },
    FieldDef {
        minimal: true,
        ..field("remained_tasks", Column::Int(REMAINED), Some(6))
    },
    FieldDef {
        minimal: true,
        posted: true,
        param: true,
        ..field("data_source_id", Column::Interned(DATA_SOURCE), Some(11))
    },
    FieldDef {
        posted: true,
        param: true,
        ..field("domain_id", Column::Domain, Some(12))
    },
    field("created_at", Column::Created, Some(21)),
    field("updated_at", Column::Time(UPDATED), Some(22)),
    field("finished_at", Column::Time(FINISHED), Some(23)),
    field("last_changed_at", Column::Time(LAST_CHANGED), Some(24)),
];

/// The Job resource's table.
pub static JOB: Schema = Schema::new("Job", &JOB_FIELDS);

impl Resource for Job {
    fn schema() -> &'static Schema {
        &JOB
    }

    fn into_columns(self) -> Columns {
        let mut c = Columns::new(self.namespace, self.job_id, self.domain_id);
        c.status = self.status as u8;
        c.set_str(DATA_SOURCE, Some(self.data_source_id));
        c.set_str(ERROR_CODE, self.error_code);
        c.text = self.error_message;
        c.set_int(TOTAL, self.total_tasks);
        c.set_int(REMAINED, self.remained_tasks);
        c.created = self.created_at;
        c.set_time(UPDATED, self.updated_at);
        c.set_time(FINISHED, self.finished_at);
        c.set_time(LAST_CHANGED, self.last_changed_at);
        c.options = self.options;
        c
    }

    fn from_columns(mut c: Columns) -> Job {
        Job {
            status: JobStatus::ALL
                .get(usize::from(c.status))
                .copied()
                .unwrap_or(JobStatus::InProgress),
            data_source_id: c.take_str(DATA_SOURCE).unwrap_or_default(),
            error_code: c.take_str(ERROR_CODE),
            total_tasks: c.int(TOTAL),
            remained_tasks: c.int(REMAINED),
            updated_at: c.time(UPDATED),
            finished_at: c.time(FINISHED),
            last_changed_at: c.time(LAST_CHANGED),
            created_at: c.created,
            error_message: c.text,
            options: c.options,
            namespace: c.namespace,
            job_id: c.id,
            domain_id: c.domain,
        }
    }
}
