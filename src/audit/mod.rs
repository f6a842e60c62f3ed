//! The audit log: one JSON line per statement, for the people who must answer "who saw
//! what, when".
//!
//! A line is written when the statement is over — for a query, when its last row has been
//! sent, it failed, or the client stopped reading — so it can say how many rows went out.
//! Fields: `time` (UTC, when the statement started), `user`, `workspace`, `client`
//! (address:port), `application_name`, `statement` (as parsed), `datasets` (the
//! workspace's datasets it names), `rows` (rows sent), `duration_ms`, `cache_hit`,
//! `outcome` (`ok`, `error` or `incomplete`) and `sqlstate` (for errors).

use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use futures::Stream;
use serde::Serialize;

use crate::error::Error;
use crate::session::{BatchStream, Outcome};

/// Where audit lines go.
pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Lines to standard output.
    pub fn stdout() -> AuditLog {
        AuditLog {
            out: Mutex::new(Box::new(std::io::stdout())),
        }
    }

    /// Lines appended to `path` (created if missing).
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn file(path: &Path) -> std::io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditLog {
            out: Mutex::new(Box::new(file)),
        })
    }

    fn write(&self, line: &Line<'_>) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let written = serde_json::to_writer(&mut *out, line)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// One audit line.
#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    user: &'a str,
    workspace: &'a str,
    client: &'a str,
    application_name: &'a str,
    statement: &'a str,
    datasets: &'a [String],
    rows: u64,
    duration_ms: f64,
    cache_hit: bool,
    outcome: &'a str,
    sqlstate: Option<&'a str>,
}

/// A statement being audited: what is known when it starts.
pub struct Statement {
    log: Arc<AuditLog>,
    time: String,
    started: Instant,
    /// Login name.
    pub user: String,
    /// Workspace (database).
    pub workspace: String,
    /// Client address.
    pub client: String,
    /// The client's `application_name`.
    pub application_name: String,
    /// The statement's text.
    pub statement: String,
    /// Datasets it names (see [`datasets_in`]).
    pub datasets: Vec<String>,
    /// Whether its rows came from the result cache.
    pub cache_hit: bool,
}

impl Statement {
    /// Start auditing a statement now.
    pub fn start(log: Arc<AuditLog>, statement: String) -> Statement {
        Statement {
            log,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            started: Instant::now(),
            user: String::new(),
            workspace: String::new(),
            client: String::new(),
            application_name: String::new(),
            statement,
            datasets: Vec::new(),
            cache_hit: false,
        }
    }

    /// Write the line: `rows` sent, and the error if it failed.
    pub fn finish(self, rows: u64, outcome: Result<(), &Error>) {
        self.finish_as(rows, outcome.map_or("error", |()| "ok"), outcome.err());
    }

    fn finish_as(self, rows: u64, outcome: &str, error: Option<&Error>) {
        let sqlstate = error.map(|e| e.sqlstate().0);
        self.log.write(&Line {
            time: &self.time,
            user: &self.user,
            workspace: &self.workspace,
            client: &self.client,
            application_name: &self.application_name,
            statement: &self.statement,
            datasets: &self.datasets,
            rows,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            cache_hit: self.cache_hit,
            outcome,
            sqlstate,
        });
    }
}

/// The outcome, with its rows counted for `audit` and the line written when they end.
pub fn track(outcome: Outcome, audit: Option<Statement>) -> Outcome {
    let Some(audit) = audit else {
        return outcome;
    };
    match outcome {
        Outcome::Rows {
            schema,
            columns,
            batches,
        } => Outcome::Rows {
            schema,
            columns,
            batches: Box::pin(Counted {
                inner: batches,
                audit: Some(audit),
                rows: 0,
            }),
        },
        other => {
            audit.finish(0, Ok(()));
            other
        }
    }
}

/// The names of `datasets` that `plan` reads.
pub fn datasets_in(plan: &LogicalPlan, datasets: &[crate::semantic::Dataset]) -> Vec<String> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|p| {
        // A dataset is a view: planned, it is its own plan under an alias of its name.
        // (A scan is a source's table, which may share a dataset's name.)
        let name = match p {
            LogicalPlan::SubqueryAlias(alias) => Some(alias.alias.table()),
            _ => None,
        };
        if let Some(name) = name {
            if datasets.iter().any(|d| d.name == name) && !found.iter().any(|f| f == name) {
                found.push(name.to_owned());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found.sort();
    found
}

/// Batches passed through, counted; the audit line is written at the end, at the first
/// error, or when the reader drops the stream early.
struct Counted {
    inner: BatchStream,
    audit: Option<Statement>,
    rows: u64,
}

impl Stream for Counted {
    type Item = Result<datafusion::arrow::record_batch::RecordBatch, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => self.rows += batch.num_rows() as u64,
            Poll::Ready(Some(Err(e))) => {
                if let Some(audit) = self.audit.take() {
                    audit.finish(self.rows, Err(e));
                }
            }
            Poll::Ready(None) => {
                if let Some(audit) = self.audit.take() {
                    audit.finish(self.rows, Ok(()));
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(audit) = self.audit.take() {
            audit.finish_as(self.rows, "incomplete", None);
        }
    }
}
