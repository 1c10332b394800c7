//! SpaceONE's `Query` and `StatisticsQuery` languages for the cost-analysis Job and JobTask APIs,
//! evaluated over an in-memory index of compact records, with the reference's exact semantics and
//! errors (spaceone-cost-analysis 1.8.7 / spaceone-core 1.8.8). No Kubernetes dependency: the
//! operator feeds the [`Index`] from a watch, the offline command from a file.
//!
//! - [`calls`]: the calls (`list`, `stat`, `get`) on REST request bodies, plus typed entry points;
//! - [`Index`] / [`Job`], [`TaskIndex`] / [`JobTask`]: the records; [`Scope`]: what a caller may
//!   see at all; [`Schema`] / [`Resource`]: one field table per resource, which every stage reads;
//! - [`Error`]: SpaceONE's error codes, messages and gRPC statuses;
//! - [`offline`]: the `query` command's loading and rendering.
//!
//! Inside, a call goes request -> parse -> plan -> index -> render, and the modules import one
//! way only (`tests/module_graph.rs` fails on a cycle):
//! - `calls` (request messages, the service's decorators) over `message` (field checks, page);
//! - parse: `query` (a list `Query`), `condition` (one filter condition), `stat::parse`;
//! - `filter` (the compiled filter), `plan` (which slots to visit), `scan` (list: plan, order,
//!   page), `stat` (the aggregation pipeline);
//! - `index` (the public [`Index`]) over `slots` (its storage) over `record` ([`Scope`], records);
//! - `render` (an Info in proto3 JSON); the tables `model` (Job) and `task` (JobTask) over
//!   `schema`; leaves: `value`, `time`, `limits`, `error`.

#[doc(hidden)]
pub mod baseline;
pub mod calls;
mod condition;
mod error;
mod filter;
mod index;
mod limits;
mod message;
mod model;
pub mod offline;
mod plan;
mod query;
mod record;
mod render;
mod scan;
mod schema;
mod slots;
mod stat;
mod streamed;
mod task;
mod time;
mod value;

pub use condition::FILTER_OPERATORS;
pub use error::{Error, GrpcCode};
pub use index::{Index, TaskIndex};
pub use limits::{Cancel, Limits};
pub use model::{JOB, Job, JobStatus};
pub use query::Query;
pub use record::Scope;
pub use schema::{
    Column, Columns, Field, FieldDef, FieldPath, FieldType, Resource, Schema, Statuses,
};
pub use task::{JOB_TASK, JobTask, JobTaskStatus};
