//! What a failed task's pods say: the message its task and its job's event carry, bounded.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Bytes of a task's error message taken from a pod.
pub const MESSAGE_LIMIT: usize = 1024;

/// The error message of a failed task: the termination message (or reason and exit code) of the
/// last container to fail in the batch Job's newest pod, else that pod's own reason, else
/// `fallback` (the Job's condition). At most [`MESSAGE_LIMIT`] bytes.
pub fn failure_message(pods: &[Pod], fallback: &str) -> String {
    let newest = pods.iter().max_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_ref(),
            a.metadata.name.as_ref(),
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref(),
                b.metadata.name.as_ref(),
            ))
    });
    let from_pod = newest.and_then(|pod| {
        let status = pod.status.as_ref()?;
        let terminated = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
            .max_by(|a, b| a.finished_at.cmp(&b.finished_at));
        let said = match terminated {
            Some(t) => match t
                .message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
            {
                Some(m) => Some(format!("{m} (exit code {})", t.exit_code)),
                None => Some(format!(
                    "{} (exit code {})",
                    t.reason.as_deref().unwrap_or("Error"),
                    t.exit_code
                )),
            },
            None => match (status.reason.as_deref(), status.message.as_deref()) {
                (Some(r), Some(m)) => Some(format!("{r}: {m}")),
                (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
                (None, None) => None,
            },
        };
        said.map(|s| format!("pod {}: {s}", pod.name_any()))
    });
    bounded(
        &from_pod.unwrap_or_else(|| fallback.to_string()),
        MESSAGE_LIMIT,
    )
}

/// `s` cut to at most `limit` bytes at a character boundary, with an ellipsis when cut.
pub fn bounded(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let room = limit.saturating_sub('…'.len_utf8());
    let mut out = String::with_capacity(limit);
    for c in s.chars() {
        if out.len().saturating_add(c.len_utf8()) > room {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}
