//! The job task record: the seed's JobTask (spaceone-cost-analysis 1.8.7,
//! `model/job_task_model.py`) plus the Kubernetes namespace, and its table.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::schema::{Column, Columns, FieldDef, Resource, Schema, Statuses};

/// The states a job task's model stores (its `choices`). The API's enum also has TIMEOUT, which
/// a list parameter may name (and which matches no task).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobTaskStatus {
    Pending,
    InProgress,
    Success,
    Failure,
    Canceled,
}

impl JobTaskStatus {
    pub const ALL: [JobTaskStatus; 5] = [
        JobTaskStatus::Pending,
        JobTaskStatus::InProgress,
        JobTaskStatus::Success,
        JobTaskStatus::Failure,
        JobTaskStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        TASK_STATUSES.name(self as u8)
    }
}

impl std::str::FromStr for JobTaskStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        JobTaskStatus::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobTask {
    /// Kubernetes namespace ("" for tasks read from a JSON file); not part of JobTaskInfo.
    pub namespace: String,
    pub job_task_id: String,
    pub status: JobTaskStatus,
    pub options: Map<String, Value>,
    /// In the model (a filter, a sort or a stat may name it), not in JobTaskInfo.
    pub created_count: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub job_id: String,
    pub data_source_id: String,
    pub domain_id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

// Where a JobTask keeps its fields.
const JOB: usize = 0;
const DATA_SOURCE: usize = 1;
const ERROR_CODE: usize = 2;
const CREATED_COUNT: usize = 0;
const STARTED: usize = 1;
const FINISHED: usize = 2;

static TASK_STATUSES: Statuses = Statuses::new(
    &["PENDING", "IN_PROGRESS", "SUCCESS", "FAILURE", "CANCELED"],
    &[
        "PENDING",
        "IN_PROGRESS",
        "SUCCESS",
        "FAILURE",
        "TIMEOUT",
        "CANCELED",
    ],
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

/// The seed's JobTask model in declaration order, with JobTaskInfo's field numbers
/// (spaceone-api 1.8.7); minimal fields: job_task_id, status, job_id, data_source_id; list
/// parameters: job_task_id, status, job_id, data_source_id, domain_id.
static TASK_FIELDS: [FieldDef; 12] = [
    FieldDef {
        minimal: true,
        param: true,
        ..field("job_task_id", Column::Id, Some(1))
    },
    FieldDef {
        minimal: true,
        param: true,
        ..field("status", Column::Status(&TASK_STATUSES), Some(2))
    },
    field("options", Column::Options, Some(3)),
    field("created_count", Column::Int(CREATED_COUNT), None),
    field("error_code", Column::Interned(ERROR_CODE), Some(4)),
    field("error_message", Column::Text, Some(5)),
    FieldDef {
        minimal: true,
        posted: true,
        param: true,
        ..field("job_id", Column::Interned(JOB), Some(11))
    },
    FieldDef {
        minimal: true,
        posted: true,
        param: true,
        ..field("data_source_id", Column::Interned(DATA_SOURCE), Some(12))
    },
    FieldDef {
        posted: true,
        param: true,
        ..field("domain_id", Column::Domain, Some(13))
    },
    field("created_at", Column::Created, Some(21)),
    field("started_at", Column::Time(STARTED), Some(22)),
    field("finished_at", Column::Time(FINISHED), Some(23)),
];

/// The JobTask resource's table.
pub static JOB_TASK: Schema = Schema::new("JobTask", &TASK_FIELDS);

impl Resource for JobTask {
    fn schema() -> &'static Schema {
        &JOB_TASK
    }

    fn into_columns(self) -> Columns {
        let mut c = Columns::new(self.namespace, self.job_task_id, self.domain_id);
        c.status = self.status as u8;
        c.options = self.options;
        c.set_int(CREATED_COUNT, self.created_count);
        c.set_str(ERROR_CODE, self.error_code);
        c.text = self.error_message;
        c.set_str(JOB, Some(self.job_id));
        c.set_str(DATA_SOURCE, Some(self.data_source_id));
        c.created = self.created_at;
        c.set_time(STARTED, self.started_at);
        c.set_time(FINISHED, self.finished_at);
        c
    }

    fn from_columns(mut c: Columns) -> JobTask {
        JobTask {
            status: JobTaskStatus::ALL
                .get(usize::from(c.status))
                .copied()
                .unwrap_or(JobTaskStatus::Pending),
            created_count: c.int(CREATED_COUNT),
            error_code: c.take_str(ERROR_CODE),
            job_id: c.take_str(JOB).unwrap_or_default(),
            data_source_id: c.take_str(DATA_SOURCE).unwrap_or_default(),
            started_at: c.time(STARTED),
            finished_at: c.time(FINISHED),
            created_at: c.created,
            error_message: c.text,
            options: c.options,
            namespace: c.namespace,
            job_task_id: c.id,
            domain_id: c.domain,
        }
    }
}
