//! The offline `query` command: a SpaceONE Job (or JobTask) API request evaluated over a JSON
//! file of jobs (or job tasks), with no cluster. The answer goes to standard output; the exit code says whether it is an error.

use std::io::Write;
use std::process::ExitCode;

use serde::Deserialize;
use serde::de::DeserializeSeed;

use crate::cli::{QueryArgs, QueryVerb};
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

/// `cost-analysis-operator query`: one Job API call over a file of jobs, or one JobTask API call
/// over a file of job tasks.
pub fn run(args: QueryArgs) -> ExitCode {
    match (&args.jobs, &args.tasks) {
        (Some(path), _) => run_over::<spaceone_query::Job>(path, "--jobs", &args),
        (None, Some(path)) => run_over::<spaceone_query::JobTask>(path, "--tasks", &args),
        (None, None) => {
            eprintln!("error: one of --jobs or --tasks is required");
            ExitCode::from(2)
        }
    }
}

fn run_over<R: Loaded>(path: &std::path::Path, flag: &str, args: &QueryArgs) -> ExitCode {
    // The request first: the file is then read once, one record at a time, and only what the
    // answer can depend on is kept (an index of every record was twelve times a file of tiny
    // jobs).
    let request_text = if args.request == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            eprintln!("error: cannot read the request from standard input: {e}");
            return ExitCode::from(2);
        }
        s
    } else {
        match std::fs::read_to_string(&args.request) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read --request {}: {e}", args.request);
                return ExitCode::from(2);
            }
        }
    };
    let request: serde_json::Value = if request_text.trim().is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_str(&request_text) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: the request is not valid JSON: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let now = match args
        .now
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
    {
        None => chrono::Utc::now(),
        Some(Ok(t)) => t.with_timezone(&chrono::Utc),
        Some(Err(e)) => {
            eprintln!("error: --now is not an RFC 3339 time: {e}");
            return ExitCode::from(2);
        }
    };
    let verb = match args.verb {
        QueryVerb::List => spaceone_query::offline::Verb::List,
        QueryVerb::Stat => spaceone_query::offline::Verb::Stat,
        QueryVerb::Get => spaceone_query::offline::Verb::Get,
    };
    let limits = spaceone_query::Limits::default();
    let read = |sink: &mut dyn FnMut(R)| -> Result<(), String> {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))?;
        read_records::<R>(std::io::BufReader::new(file), sink)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let failed = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    // A stat that starts with a count or an order-insensitive group keeps only its groups.
    let mut answered = None;
    let mut repeated = false;
    if verb == spaceone_query::offline::Verb::Stat {
        use spaceone_query::offline::Chunked;
        match spaceone_query::offline::stat_in_chunks::<R>(
            &request,
            now,
            &limits,
            spaceone_query::offline::CHUNK,
            &mut |sink| read(sink),
        ) {
            Ok(Chunked::Answered(out, code)) => answered = Some((out, code)),
            Ok(Chunked::Repeated) => repeated = true,
            Ok(Chunked::NotChunked) => {}
            Err(e) => return failed(e),
        }
    }
    if answered.is_none() && !repeated {
        let mut streamed =
            spaceone_query::offline::Streamed::<R>::new(verb, request.clone(), now, &limits);
        if let Err(e) = read(&mut |r| streamed.push(r)) {
            return failed(e);
        }
        answered = streamed.finish();
    }
    let (out, code) = match answered {
        Some(answer) => answer,
        None => {
            // A (namespace, id) repeats: the later record replaces the earlier, as in the
            // operator's index, so the call is answered over a whole one.
            let mut index = spaceone_query::Index::<R>::default();
            if let Err(e) = read(&mut |r| index.upsert(r)) {
                return failed(e);
            }
            spaceone_query::offline::run_over(verb, &index, &request, now, &limits)
        }
    };
    // A reader that stops early (`| head`) is not an error of ours; anything else is.
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{out}").and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("error: cannot write the answer: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A record the offline command reads: from an element of a JSON array, or from the custom
/// resource object of a Kubernetes `List`'s `items` (read as the operator reads it from a watch).
pub trait Loaded: spaceone_query::Resource + Sized {
    type Object: serde::de::DeserializeOwned + kube::Resource;
    /// What the file must be, for errors.
    const EXPECTED: &'static str;
    /// What a List's `items` must be, for errors.
    const ITEMS: &'static str;
    fn from_element(i: usize, v: &serde_json::Value) -> Result<Self, String>;
    fn from_object(object: Self::Object) -> Self;
}

impl Loaded for spaceone_query::Job {
    type Object = CostAnalysisJob;
    const EXPECTED: &'static str = "a JSON array of jobs, or a Kubernetes List (with items)";
    const ITEMS: &'static str = "a JSON array of jobs in items";

    fn from_element(i: usize, v: &serde_json::Value) -> Result<Self, String> {
        spaceone_query::offline::job_from_info(i, v)
    }

    fn from_object(object: CostAnalysisJob) -> Self {
        object.spaceone_job()
    }
}

impl Loaded for spaceone_query::JobTask {
    type Object = CostAnalysisJobTask;
    const EXPECTED: &'static str =
        "a JSON array of job tasks, or a Kubernetes List (with items) of CostAnalysisJobTasks";
    const ITEMS: &'static str = "a JSON array of job tasks in items";

    fn from_element(i: usize, v: &serde_json::Value) -> Result<Self, String> {
        let object = CostAnalysisJobTask::deserialize(v).map_err(|e| format!("task #{i}: {e}"))?;
        if object.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(format!("task #{i} has no metadata.name"));
        }
        Ok(object.spaceone_task())
    }

    fn from_object(object: CostAnalysisJobTask) -> Self {
        object.spaceone_task()
    }
}

/// A JSON array of SpaceONE JobInfo objects, or a Kubernetes `List` of CostAnalysisJob objects
/// (`kubectl get caj -A -o json`), read as the operator reads them from a watch.
pub fn load_jobs(text: &str) -> Result<Vec<spaceone_query::Job>, String> {
    let mut jobs = Vec::new();
    read_records(text.as_bytes(), &mut |job| jobs.push(job))?;
    Ok(jobs)
}

/// [`load_jobs`] from a reader, handing each job to `sink` as soon as it is read: only one item
/// is ever held in its parsed form.
pub fn read_jobs(
    reader: impl std::io::Read,
    sink: &mut dyn FnMut(spaceone_query::Job),
) -> Result<(), String> {
    read_records(reader, sink)
}

/// Records of `R` from a reader, each handed to `sink` as soon as it is read.
pub fn read_records<R: Loaded>(
    reader: impl std::io::Read,
    sink: &mut dyn FnMut(R),
) -> Result<(), String> {
    use serde_json::error::Category;
    let mut de = serde_json::Deserializer::from_reader(reader);
    Doc(sink)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| match e.classify() {
            Category::Data => e.to_string(),
            _ => format!("not valid JSON: {e}"),
        })
}

/// The document: an array of records, or a List whose `items` are objects.
struct Doc<'s, R>(&'s mut dyn FnMut(R));

/// The `items` of a List.
struct Items<'s, R>(&'s mut dyn FnMut(R));

/// Item #`.0` of a List.
struct Item<R>(usize, std::marker::PhantomData<fn() -> R>);

impl<'de, R: Loaded> DeserializeSeed<'de> for Doc<'_, R> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, R: Loaded> serde::de::Visitor<'de> for Doc<'_, R> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(R::EXPECTED)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            (self.0)(R::from_element(i, &item).map_err(serde::de::Error::custom)?);
            i = i.saturating_add(1);
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "items" && !found {
                map.next_value_seed(Items(&mut *self.0))?;
                found = true;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!(
                "expected {}",
                R::EXPECTED
            )))
        }
    }
}

impl<'de, R: Loaded> DeserializeSeed<'de> for Items<'_, R> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, R: Loaded> serde::de::Visitor<'de> for Items<'_, R> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(R::ITEMS)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while let Some(object) = seq.next_element_seed(Item::<R>(i, std::marker::PhantomData))? {
            if kube::Resource::meta(&object)
                .name
                .as_deref()
                .is_none_or(str::is_empty)
            {
                return Err(serde::de::Error::custom(format!(
                    "item #{i} has no metadata.name"
                )));
            }
            (self.0)(R::from_object(object));
            i = i.saturating_add(1);
        }
        Ok(())
    }
}

impl<'de, R: Loaded> DeserializeSeed<'de> for Item<R> {
    type Value = R::Object;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<R::Object, D::Error> {
        R::Object::deserialize(d)
            .map_err(|e| serde::de::Error::custom(format!("item #{}: {e}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use spaceone_query::JobStatus;

    #[test]
    fn a_kubernetes_list_is_read_through_the_one_mapping() {
        let jobs = load_jobs(include_str!("../tests/fixtures/caj-list.json")).expect("loads");
        assert_eq!(jobs.len(), 2);
        let a = &jobs[0];
        assert_eq!(
            (a.namespace.as_str(), a.job_id.as_str()),
            ("team-a", "job-aaa111")
        );
        assert_eq!(a.status, JobStatus::Failure);
        assert_eq!(a.error_code.as_deref(), Some("ERROR_JOB_TASK"));
        assert_eq!((a.total_tasks, a.remained_tasks), (2, 1));
        assert_eq!(
            (a.domain_id.as_str(), a.data_source_id.as_str()),
            ("domain-1", "ds-1")
        );
        assert_eq!(a.options.get("sync_mode"), Some(&json!("MANUAL")));
        // status.createdAt wins over metadata.creationTimestamp.
        assert_eq!(
            spaceone_query::calls::job_info(a)["created_at"],
            json!("2024-01-01T00:00:01.250Z")
        );
        assert_eq!(
            spaceone_query::calls::job_info(a)["last_changed_at"],
            json!("2023-12-31T00:00:00.000Z")
        );
        // No status yet: IN_PROGRESS, created at the object's creation, the counters from the spec.
        let b = &jobs[1];
        assert_eq!(b.status, JobStatus::InProgress);
        assert_eq!((b.total_tasks, b.remained_tasks), (1, 1));
        assert_eq!(
            spaceone_query::calls::job_info(b)["created_at"],
            json!("2024-01-02T00:00:00.000Z")
        );
        assert_eq!(b.finished_at, None);
    }

    #[test]
    fn broken_lists_are_refused_clearly() {
        for (text, want) in [
            (
                "{\"items\": [{\"metadata\": {}, \"spec\": {\"domainId\": \"d\", \"dataSourceId\": \"s\"}}]}",
                "no metadata.name",
            ),
            (
                "{\"items\": [{\"metadata\": {\"name\": \"j\"}, \"spec\": 1}]}",
                "item #0",
            ),
            ("{\"items\": 1}", "expected a JSON array of jobs"),
            ("3", "or a Kubernetes List"),
        ] {
            let err = load_jobs(text).err().unwrap_or_default();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
