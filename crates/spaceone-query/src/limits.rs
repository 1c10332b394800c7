//! Budgets like a database has: every request has a bounded cost. A request over any of them is
//! answered `ERROR_DB_QUERY` (gRPC INTERNAL, as the crate's other database errors) with a reason
//! that names the limit and its value, as MongoDB answers `Exceeded memory limit for $group` or
//! `operation exceeded time limit`.
//!
//! The defaults are far above anything SpaceONE's own clients send (a console filter has a handful
//! of values, a keyword a few words, a stat a few groups over one domain's jobs).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use regex_automata::meta::Regex;
use serde_json::Value;

/// Per-request budgets. Every field is public so the operator can wire them to flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Values in one `in` / `not_in` / `contain_in` / `not_contain_in` / `regex_in` condition
    /// (also the words of a `keyword`). Default 10,000.
    pub max_values: usize,
    /// Total bytes of all filter values of one request (strings by their UTF-8 length, other
    /// scalars 8 bytes). Default 1 MiB.
    pub max_values_bytes: usize,
    /// Bytes of the patterns of one condition: a `regex` pattern, all patterns of a `regex_in`,
    /// all values of a `contain*` condition (checked before anything is compiled: compiling is
    /// what costs). Default 4 KiB.
    pub max_regex_pattern_bytes: usize,
    /// Size limit of one compiled regular expression (the `regex` crate's `size_limit`; a
    /// `regex_in` or `contain_in` condition compiles into one multi-pattern expression).
    /// Default 1 MiB.
    pub regex_size_limit: usize,
    /// Cache limit of one expression's lazy DFA (the `regex` crate's `dfa_size_limit`; used when
    /// the lazy DFA is compiled in). Default 2 MiB.
    pub regex_dfa_size_limit: usize,
    /// Memory of all compiled regular expressions of one request, counted as twice each
    /// expression's reported heap use (its matching cache is of the same order). Default 16 MiB.
    pub max_regex_total_bytes: usize,
    /// Rows any stat stage (group, unwind, project, distinct) may produce. Default 1,000,000.
    pub max_stage_rows: usize,
    /// Approximate memory one stat stage holds: each output row, group, set or pushed value is
    /// charged its own size as it is added (an unwound row: its element plus the rest of its
    /// document), as MongoDB's 100 MB stage limit counts what a blocking stage really holds.
    /// Default 100 MiB.
    pub max_stage_bytes: usize,
    /// Wall-clock time of one request, checked cooperatively wherever the work is: per row in
    /// scans and every stage, and inside a row per value it reads or copies (a key path's
    /// segments, a projected, grouped, pushed or unwound value, by its size), so one expensive
    /// row cannot run far past it. Default 10 s.
    pub max_time: Duration,
    /// Stops the request from outside (a caller that gave up, a server shutting down): read
    /// wherever the clock is read, so a cancelled request stops at its next check with
    /// ERROR_DB_QUERY `operation was interrupted`. `None` by default; give each request a fresh
    /// token (a shared one cancels them all).
    pub cancel: Option<Cancel>,
}

/// A request's cancellation flag: cheap to clone (one shared flag), set once, never reset.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Asks every request holding this token (or a clone of it) to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Tokens are equal when they are the same flag (clones of one token), not when their states are.
impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cancel").field(&self.is_cancelled()).finish()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_values: 10_000,
            max_values_bytes: 1 << 20,
            max_regex_pattern_bytes: 4 << 10,
            regex_size_limit: 1 << 20,
            regex_dfa_size_limit: 2 << 20,
            max_regex_total_bytes: 16 << 20,
            max_stage_rows: 1_000_000,
            max_stage_bytes: 100 << 20,
            max_time: Duration::from_secs(10),
            cancel: None,
        }
    }
}

/// How often (in units of work) the clock is read.
const CLOCK_EVERY: u64 = 4096;

/// One request's use of its [`Limits`]. Single-threaded (one request), hence `Cell`s: scans
/// can tick it from inside iterator adaptors.
pub(crate) struct Budget<'l> {
    pub limits: &'l Limits,
    deadline: Cell<Option<Instant>>,
    work: Cell<u64>,
    next_clock: Cell<u64>,
    timed_out: Cell<bool>,
    values_bytes: Cell<usize>,
    regex_bytes: Cell<usize>,
}

/// The reason of an exceeded limit (wrapped into ERROR_DB_QUERY by the caller, once).
pub(crate) type Exceeded = String;

impl<'l> Budget<'l> {
    pub fn new(limits: &'l Limits) -> Budget<'l> {
        Budget {
            limits,
            deadline: Cell::new(Instant::now().checked_add(limits.max_time)),
            work: Cell::new(0),
            next_clock: Cell::new(CLOCK_EVERY),
            timed_out: Cell::new(false),
            values_bytes: Cell::new(0),
            regex_bytes: Cell::new(0),
        }
    }

    /// Counts `n` units of work (a row visited, a key-path segment, a value read or copied); reads
    /// the clock (and the cancel token) every few thousand units. `false` once the time is up or
    /// the request is cancelled.
    #[inline]
    pub fn tick(&self, n: usize) -> bool {
        if self.timed_out.get() {
            return false;
        }
        let work = self
            .work
            .get()
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        self.work.set(work);
        if work >= self.next_clock.get() {
            self.next_clock.set(work.saturating_add(CLOCK_EVERY));
            if self.expired() {
                self.timed_out.set(true);
                return false;
            }
        }
        true
    }

    /// Counts `n` units of work, with the reason to stop once the time is up.
    pub fn work(&self, n: usize) -> Result<(), Exceeded> {
        if self.tick(n) {
            Ok(())
        } else {
            self.check_time()
        }
    }

    fn cancelled(&self) -> bool {
        self.limits
            .cancel
            .as_ref()
            .is_some_and(Cancel::is_cancelled)
    }

    fn expired(&self) -> bool {
        self.cancelled() || self.deadline.get().is_some_and(|d| Instant::now() >= d)
    }

    /// Moves the deadline `by` later: time the request spent waiting on something that is not
    /// its work (the offline command reading its file between chunks) does not count.
    pub fn postpone(&self, by: Duration) {
        self.deadline
            .set(self.deadline.get().and_then(|d| d.checked_add(by)));
    }

    /// The units of work counted so far.
    #[cfg(test)]
    pub fn worked(&self) -> u64 {
        self.work.get()
    }

    /// The time limit's error, if the time is up (also reads the clock and the cancel token).
    pub fn check_time(&self) -> Result<(), Exceeded> {
        if self.expired() {
            self.timed_out.set(true);
        }
        if self.timed_out.get() {
            if self.cancelled() {
                return Err(String::from("operation was interrupted"));
            }
            return Err(format!(
                "operation exceeded time limit (max_time = {} ms)",
                self.limits.max_time.as_millis()
            ));
        }
        Ok(())
    }

    /// One list condition's values, and all values of the request so far.
    pub fn charge_values(&self, operator: &str, value: &Value) -> Result<(), Exceeded> {
        if let Value::Array(items) = value
            && items.len() > self.limits.max_values
        {
            return Err(format!(
                "too many values in one {operator} condition: {} (max_values = {})",
                items.len(),
                self.limits.max_values
            ));
        }
        let total = self.values_bytes.get().saturating_add(value_bytes(value));
        self.values_bytes.set(total);
        if total > self.limits.max_values_bytes {
            return Err(format!(
                "filter values exceed max_values_bytes = {} bytes",
                self.limits.max_values_bytes
            ));
        }
        Ok(())
    }

    /// The patterns of one condition against `max_regex_pattern_bytes`.
    pub fn check_pattern_bytes(&self, patterns: &[String]) -> Result<(), Exceeded> {
        let bytes = patterns
            .iter()
            .fold(0, |n: usize, p| n.saturating_add(p.len()));
        if bytes > self.limits.max_regex_pattern_bytes {
            return Err(format!(
                "regular expressions of {bytes} bytes exceed max_regex_pattern_bytes = {}",
                self.limits.max_regex_pattern_bytes
            ));
        }
        Ok(())
    }

    /// Compiles patterns (case-insensitive) into one expression matching when any of them does,
    /// within the per-expression and per-request limits. `Err(Ok(reason))`: a limit;
    /// `Err(Err(message))`: an invalid pattern.
    pub fn compile(&self, patterns: &[String]) -> Result<Regex, Result<Exceeded, String>> {
        let l = self.limits;
        self.check_pattern_bytes(patterns).map_err(Ok)?;
        let remaining = l
            .max_regex_total_bytes
            .saturating_sub(self.regex_bytes.get());
        let total_exceeded = || {
            format!(
                "compiled regular expressions exceed max_regex_total_bytes = {} bytes",
                l.max_regex_total_bytes
            )
        };
        let limit = l.regex_size_limit.min(remaining / 2);
        let built = Regex::builder()
            .syntax(regex_automata::util::syntax::Config::new().case_insensitive(true))
            .configure(
                Regex::config()
                    .nfa_size_limit(Some(limit))
                    .dfa_size_limit(Some(l.regex_dfa_size_limit))
                    .hybrid_cache_capacity(l.regex_dfa_size_limit),
            )
            .build_many(patterns);
        let re = match built {
            Ok(re) => re,
            Err(e) => {
                if let Some(se) = e.syntax_error() {
                    return Err(Err(se.to_string()));
                }
                if e.size_limit().is_some() {
                    return Err(Ok(if limit < l.regex_size_limit {
                        total_exceeded()
                    } else {
                        format!(
                            "compiled regular expression exceeds regex_size_limit = {} bytes",
                            l.regex_size_limit
                        )
                    }));
                }
                return Err(Err(e.to_string()));
            }
        };
        let used = self
            .regex_bytes
            .get()
            .saturating_add(re.memory_usage().saturating_mul(2));
        self.regex_bytes.set(used);
        if used > l.max_regex_total_bytes {
            return Err(Ok(total_exceeded()));
        }
        Ok(re)
    }
}

/// Bytes a filter value stands for: strings by length, other scalars 8.
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a
            .iter()
            .fold(8, |n: usize, x| n.saturating_add(value_bytes(x))),
        Value::Object(m) => m.iter().fold(8, |n: usize, (k, x)| {
            n.saturating_add(k.len()).saturating_add(value_bytes(x))
        }),
        _ => 8,
    }
}

/// A stage's output so far: rows and the approximate bytes they really hold, checked as each row
/// or value is added.
pub(crate) struct StageUse<'b, 'l> {
    budget: &'b Budget<'l>,
    stage: &'static str,
    rows: usize,
    bytes: usize,
}

impl<'b, 'l> StageUse<'b, 'l> {
    pub fn new(budget: &'b Budget<'l>, stage: &'static str) -> Self {
        StageUse {
            budget,
            stage,
            rows: 0,
            bytes: 0,
        }
    }

    /// Reserves `rows` more rows of `bytes_each` bytes each; also counts them as work.
    pub fn reserve(&mut self, rows: usize, bytes_each: usize) -> Result<(), Exceeded> {
        let l = self.budget.limits;
        self.rows = self.rows.saturating_add(rows);
        if self.rows > l.max_stage_rows {
            return Err(format!(
                "Exceeded row limit for ${} (max_stage_rows = {})",
                self.stage, l.max_stage_rows
            ));
        }
        self.add_bytes(rows.saturating_mul(bytes_each))?;
        if !self.budget.tick(rows.max(1)) {
            return self.budget.check_time();
        }
        Ok(())
    }

    /// Counts work against the time budget (see [`Budget::tick`]).
    pub fn tick(&self, n: usize) -> bool {
        self.budget.tick(n)
    }

    pub fn budget(&self) -> &'b Budget<'l> {
        self.budget
    }

    /// The time limit's reason (after [`StageUse::tick`] said the time is up).
    pub fn time_exceeded(&self) -> Exceeded {
        match self.budget.check_time() {
            Err(e) => e,
            Ok(()) => String::from("operation exceeded time limit"),
        }
    }

    /// Reserves `bytes` more bytes (a value added to an existing row or accumulator).
    pub fn add_bytes(&mut self, bytes: usize) -> Result<(), Exceeded> {
        let l = self.budget.limits;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > l.max_stage_bytes {
            return Err(format!(
                "Exceeded memory limit for ${} (max_stage_bytes = {})",
                self.stage, l.max_stage_bytes
            ));
        }
        Ok(())
    }
}
