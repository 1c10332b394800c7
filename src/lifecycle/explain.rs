//! What a job that its tasks failed says about them. JobInfo's `error_code` and `error_message`
//! stay SpaceONE's (`ERROR_JOB_TASK`, "One or more job tasks have failed."); the job's `Failed`
//! event and its conditions' message add which tasks failed and why, so `kubectl describe caj`,
//! `kubectl get events` and Argo CD show it:
//!
//! ```text
//! ERROR_JOB_TASK: One or more job tasks have failed. Failed tasks: job-1.t1 (ERROR_TOKEN: token
//! expired); job-1.t3 (ERROR_QUOTA: ...); and 2 more
//! ```
//!
//! Failed tasks are named by their object names, earliest failure first (ties by name). The text is
//! bounded: at most [`MAX_EXPLANATION_BYTES`] in all (the events.k8s.io/v1 limit on an event's
//! note; a condition's message may be longer, but one text serves both), a task's error code at
//! most [`MAX_CODE_BYTES`] and its message at most [`MAX_MESSAGE_BYTES`] (cut at a character
//! boundary, ending in `…`), and the tasks that no longer fit are counted (`and N more`). The first
//! failed task always fits. Control characters (newlines in a worker's message) become spaces, so
//! the text stays one line.

use super::rules::TaskView;
use crate::resources::TaskState;

/// The whole text's bound in bytes: the events.k8s.io/v1 note limit.
pub const MAX_EXPLANATION_BYTES: usize = 1024;
/// The bound on one task's error code, in bytes.
pub const MAX_CODE_BYTES: usize = 64;
/// The bound on one task's error message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256;

/// Room kept for "; and N more" (N at most 20 digits).
const MORE_RESERVE: usize = 32;

/// The explanation of a job failed by its tasks: SpaceONE's error, then the failed tasks among
/// `tasks` with their errors. `code` and `message` are the job's own (SpaceONE's) error.
pub fn task_failure(code: &str, message: &str, tasks: &[&TaskView]) -> String {
    let mut failed: Vec<&TaskView> = tasks
        .iter()
        .copied()
        .filter(|t| t.state == TaskState::Failure)
        .collect();
    failed.sort_by(|a, b| {
        (a.finished_at.is_none(), a.finished_at, &a.name).cmp(&(
            b.finished_at.is_none(),
            b.finished_at,
            &b.name,
        ))
    });
    let mut out = format!("{code}: {message}");
    if failed.is_empty() {
        return clip(&out, MAX_EXPLANATION_BYTES);
    }
    out.push_str(if failed.len() == 1 {
        " Failed task: "
    } else {
        " Failed tasks: "
    });
    let count = failed.len();
    for (i, task) in failed.iter().enumerate() {
        let piece = describe(task);
        let sep = if i == 0 { "" } else { "; " };
        let last = i.saturating_add(1) == count;
        let reserve = if last { 0 } else { MORE_RESERVE };
        let fits = out
            .len()
            .saturating_add(sep.len())
            .saturating_add(piece.len())
            .saturating_add(reserve)
            <= MAX_EXPLANATION_BYTES;
        if i == 0 && !fits {
            // Only a name near the object-name limit with a full code and message: cut the piece.
            let room = MAX_EXPLANATION_BYTES
                .saturating_sub(out.len())
                .saturating_sub(reserve);
            out.push_str(&clip(&piece, room));
        } else if fits {
            out.push_str(sep);
            out.push_str(&piece);
        } else {
            out.push_str(&format!("; and {} more", count.saturating_sub(i)));
            break;
        }
    }
    clip(&out, MAX_EXPLANATION_BYTES)
}

/// `name (CODE: message)`, each part bounded and on one line.
fn describe(task: &TaskView) -> String {
    let code = task.error_code.as_deref().filter(|c| !c.is_empty());
    let message = task.error_message.as_deref().filter(|m| !m.is_empty());
    let error = match (code, message) {
        (Some(c), Some(m)) => format!(
            "{}: {}",
            clip(&one_line(c), MAX_CODE_BYTES),
            clip(&one_line(m), MAX_MESSAGE_BYTES)
        ),
        (Some(c), None) => clip(&one_line(c), MAX_CODE_BYTES),
        (None, Some(m)) => clip(&one_line(m), MAX_MESSAGE_BYTES),
        (None, None) => "no error given".to_string(),
    };
    format!("{} ({error})", task.name)
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` if it has at most `max` bytes; otherwise its longest prefix (whole characters) that fits
/// with a trailing `…` in `max` bytes.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let room = max.saturating_sub('…'.len_utf8());
    let mut out = String::with_capacity(max);
    for c in s.chars() {
        if out.len().saturating_add(c.len_utf8()) > room {
            break;
        }
        out.push(c);
    }
    if out.len().saturating_add('…'.len_utf8()) <= max {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
