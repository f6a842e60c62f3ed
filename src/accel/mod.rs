//! Accelerated datasets: a full extract of a dataset into a local columnar copy (Arrow in
//! memory), answered instead of the source once it is ready.
//!
//! The first load runs in the background; until it is ready, queries go to the source.
//! A refresh builds a whole new copy beside the old one and then swaps it in with one
//! write ([`DatasetSchema::replace`]): a query planned before the swap finishes on the
//! copy it was planned with, every query planned after reads the new one. A refresh that
//! fails keeps the old copy and records the error ([`Status`]). The copy replaces only
//! the dataset's *definition*; each session's row policies and column masks are applied
//! above it exactly as above the source (`policy::SessionDatasets`), so what a user may
//! see does not depend on where it is read. Rollups ([`rollup`]) are rebuilt from each
//! new copy before it is swapped in.

pub mod rollup;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::cache::ResultCache;
use crate::catalog::datasets::DatasetSchema;
use crate::config::{Config, ConfigError};
use crate::semantic::DatasetTable;

/// Why a refresh failed (the old copy, if any, keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// Reading the dataset from its source failed.
    #[error("reading dataset \"{dataset}\" from its source failed: {cause}")]
    Read {
        /// The dataset.
        dataset: String,
        /// What the engine or source said.
        cause: String,
    },
    /// Building the rollups from the new copy failed.
    #[error("building rollup \"{rollup}\" of dataset \"{dataset}\" failed: {cause}")]
    Rollup {
        /// The dataset.
        dataset: String,
        /// The rollup.
        rollup: String,
        /// What the engine said.
        cause: String,
    },
    /// The server is shutting down.
    #[error("refresh of dataset \"{0}\" stopped: the server is shutting down")]
    Stopped(String),
}

/// Where a copy stands, for the admin interface and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Workspace.
    pub workspace: String,
    /// Dataset.
    pub dataset: String,
    /// `loading` (no copy yet: the source answers), `ready`, or `failed` (no copy; the
    /// source answers).
    pub state: &'static str,
    /// Copies built so far; the one serving is this number.
    pub version: u64,
    /// Rows in the copy serving.
    pub rows: u64,
    /// Bytes of Arrow memory it holds (rollups included).
    pub bytes: u64,
    /// When the copy serving was built (RFC 3339).
    pub built_at: Option<String>,
    /// How long building it took, in seconds.
    pub build_seconds: f64,
    /// The last refresh's error, if it failed (the copy serving, if any, is older).
    pub last_error: Option<String>,
    /// Refreshes that failed since start.
    pub failures: u64,
}

/// One accelerated dataset.
#[derive(Debug)]
pub struct Acceleration {
    workspace: String,
    dataset: String,
    /// The dataset's definition against its source: what every copy is built from.
    source: LogicalPlan,
    state: SessionState,
    public: Arc<DatasetSchema>,
    cache: Option<Arc<ResultCache>>,
    refresh_every: Option<Duration>,
    rollups: Vec<rollup::RollupDef>,
    status: Mutex<Status>,
    running: tokio::sync::Mutex<()>,
    built: AtomicU64,
}

impl Acceleration {
    /// The acceleration of `dataset` of `ws`, rebuilt every `refresh_every` (or only on
    /// demand) with `rollups`. Copies are read with the workspace's state, so the read
    /// is pushed to the source as any query is, and swapped into its shared `public`.
    pub fn new(
        ws: &crate::semantic::Workspace,
        dataset: &crate::semantic::Dataset,
        refresh_every: Option<Duration>,
        rollups: Vec<rollup::RollupDef>,
    ) -> Acceleration {
        Acceleration {
            workspace: ws.name.clone(),
            dataset: dataset.name.clone(),
            status: Mutex::new(Status {
                workspace: ws.name.clone(),
                dataset: dataset.name.clone(),
                state: "loading",
                ..Status::default()
            }),
            source: dataset.table.plan().clone(),
            state: ws.state.clone(),
            public: Arc::clone(&ws.public),
            cache: ws.cache.clone(),
            refresh_every,
            rollups,
            running: tokio::sync::Mutex::new(()),
            built: AtomicU64::new(0),
        }
    }

    /// Workspace name.
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// Dataset name.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// Where the copy stands now.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Load the first copy, then refresh on schedule, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                r = self.refresh() => { let _ = r; }
            }
            let Some(every) = self.refresh_every else {
                return;
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Build a new copy and swap it in; on failure keep the old one and record why.
    /// Refreshes of one dataset run one at a time (a second waits for the first).
    ///
    /// # Errors
    /// Why the new copy could not be built.
    pub async fn refresh(&self) -> Result<Status, AccelError> {
        let _one = self.running.lock().await;
        let started = Instant::now();
        tracing::info!(workspace = %self.workspace, dataset = %self.dataset, "acceleration: building a new copy");
        match self.build().await {
            Ok((table, rows, bytes)) => {
                let version = self.built.fetch_add(1, Ordering::AcqRel) + 1;
                self.public.replace(&self.dataset, table);
                if let Some(cache) = &self.cache {
                    cache.flush(Some(&self.workspace), Some(&self.dataset));
                }
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(workspace = %self.workspace, dataset = %self.dataset, version, rows, bytes, seconds = secs, "acceleration: copy ready");
                let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                s.state = "ready";
                s.version = version;
                s.rows = rows;
                s.bytes = bytes;
                s.built_at = Some(chrono::Utc::now().to_rfc3339());
                s.build_seconds = secs;
                s.last_error = None;
                Ok(s.clone())
            }
            Err(e) => {
                tracing::error!(workspace = %self.workspace, dataset = %self.dataset, error = %e, "acceleration: refresh failed; the previous copy (or the source) keeps answering");
                let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                if s.version == 0 {
                    s.state = "failed";
                }
                s.last_error = Some(e.to_string());
                s.failures += 1;
                Err(e)
            }
        }
    }

    /// Read the whole dataset from its source into memory, with progress in the log, and
    /// the table that answers the dataset from it (and its rollups).
    async fn build(&self) -> Result<(Arc<dyn TableProvider>, u64, u64), AccelError> {
        let read = |cause: datafusion::error::DataFusionError| AccelError::Read {
            dataset: self.dataset.clone(),
            cause: crate::Error::from_datafusion(&cause).to_string(),
        };
        let df = DataFrame::new(self.state.clone(), self.source.clone());
        let mut stream = df.execute_stream().await.map_err(read)?;
        let schema = stream.schema();
        let (mut batches, mut rows, mut bytes) = (Vec::new(), 0u64, 0u64);
        let mut last_log = Instant::now();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(read)?;
            rows += batch.num_rows() as u64;
            bytes += batch.get_array_memory_size() as u64;
            batches.push(batch);
            if last_log.elapsed() >= Duration::from_secs(2) {
                tracing::info!(dataset = %self.dataset, rows, mib = bytes >> 20, "acceleration: loading");
                last_log = Instant::now();
            }
        }
        let mut extract = rollup::Extract {
            table: Arc::new(
                MemTable::try_new(Arc::clone(&schema), partitions(batches, self.partitions()))
                    .map_err(read)?,
            ),
            rollups: Vec::new(),
        };
        let version = self.built.load(Ordering::Acquire) + 1;
        for def in &self.rollups {
            let r = rollup::build(def, &self.dataset, version, &extract.table, &self.state)
                .await
                .map_err(|cause| AccelError::Rollup {
                    dataset: self.dataset.clone(),
                    rollup: def.name.clone(),
                    cause,
                })?;
            bytes += r.bytes;
            extract.rollups.push(r);
        }
        let scan = LogicalPlanBuilder::scan(
            format!("{} (accelerated copy v{version})", self.dataset),
            provider_as_source(Arc::new(extract)),
            None,
        )
        .and_then(LogicalPlanBuilder::build)
        .map_err(read)?;
        let table: Arc<dyn TableProvider> = Arc::new(DatasetTable::from_plan(scan));
        Ok((table, rows, bytes))
    }

    fn partitions(&self) -> usize {
        self.state.config().target_partitions().max(1)
    }
}

/// Deal `batches` round-robin into `n` partitions, so scans of the copy use every core.
fn partitions(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let mut parts: Vec<Vec<RecordBatch>> = (0..n).map(|_| Vec::new()).collect();
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    parts
}

/// The accelerations of `ws`'s datasets that declare one, their rollups resolved against
/// each dataset's columns and measures (datasets whose source is down at start-up are
/// served from the source when it returns, unaccelerated until a restart).
///
/// # Errors
/// Every rollup that names a column or measure the dataset lacks, with file and line.
pub fn for_workspace(
    config: &Config,
    ws: &crate::semantic::Workspace,
) -> Result<Vec<Arc<Acceleration>>, Vec<ConfigError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for d in config.datasets.iter().filter(|d| d.workspace == ws.name) {
        let (Some(accel), Some(dataset)) = (
            d.acceleration.as_ref(),
            ws.datasets.iter().find(|x| x.name == d.name.to_lowercase()),
        ) else {
            continue;
        };
        let schema = dataset.table.schema();
        let granularities: Vec<(String, crate::config::Granularity, String)> = d
            .dimensions
            .iter()
            .filter(|dim| matches!(dim.kind, crate::config::DimensionKind::Time(_)))
            .flat_map(|dim| {
                crate::config::Granularity::ALL.into_iter().filter_map(|g| {
                    let column = format!("{}_{}", dim.name, g.name());
                    schema
                        .field_with_name(&column)
                        .is_ok()
                        .then(|| (dim.name.clone(), g, column))
                })
            })
            .collect();
        let mut rollups = Vec::new();
        for r in &d.rollups {
            match rollup::RollupDef::resolve(r, &schema, &d.measures, &granularities) {
                Ok(def) => rollups.push(def),
                Err(m) => errors.push(ConfigError::at(
                    &r.origin,
                    format!("dataset \"{}\".rollup \"{}\"", d.name, r.name),
                    m,
                )),
            }
        }
        out.push(Arc::new(Acceleration::new(
            ws,
            dataset,
            accel.refresh,
            rollups,
        )));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Every accelerated dataset of the server.
#[derive(Debug, Default)]
pub struct Accelerations {
    /// One per accelerated dataset.
    pub all: Vec<Arc<Acceleration>>,
}

impl Accelerations {
    /// The acceleration of `dataset` in `workspace`.
    pub fn find(&self, workspace: &str, dataset: &str) -> Option<&Arc<Acceleration>> {
        self.all
            .iter()
            .find(|a| a.workspace == workspace && a.dataset == dataset)
    }

    /// Start every first load and refresh schedule in the background.
    pub fn spawn(&self, tasks: &tokio_util::task::TaskTracker, stop: &CancellationToken) {
        for a in &self.all {
            tasks.spawn(Arc::clone(a).run(stop.clone()));
        }
    }
}
