//! Sources that were down at start-up, tried again in the background.
//!
//! biproxy starts without them (their datasets answer 08001 naming the source) and keeps
//! knocking: when a source answers, its datasets are planned exactly as at start-up and
//! put into their workspace's shared `public` schema, so new and open sessions alike can
//! query them without a restart. A dataset that still cannot be planned (its table was
//! dropped meanwhile, say) keeps answering 08001, now with that reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::datasets::DatasetSchema;
use crate::config::{DatasetConfig, SourceConfig, SourceKind};
use crate::source::{OpenError, Source};

/// Never knock more often than this, whatever the config says.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// What is still missing, and where to put it when it comes back.
#[derive(Debug)]
pub struct Recovery {
    /// The sources that are open, for datasets that join across sources.
    pub(super) sources: HashMap<String, Source>,
    /// The sources still down.
    pub(super) down: Vec<SourceConfig>,
    /// Datasets waiting for a source, with their workspace.
    pub(super) pending: Vec<(String, DatasetConfig)>,
    /// Each workspace's `public` schema.
    pub(super) schemas: HashMap<String, Arc<DatasetSchema>>,
}

impl Recovery {
    /// Try the down sources every `retry_interval` until all are back or `stop` is
    /// cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        while !self.down.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.interval()) => {}
            }
            self.retry().await;
        }
    }

    fn interval(&self) -> Duration {
        self.down
            .iter()
            .filter_map(|s| match &s.kind {
                SourceKind::Sql(sql) => Some(sql.retry_interval),
                SourceKind::Lake { .. } => None,
            })
            .min()
            .unwrap_or(Duration::from_secs(10))
            .max(MIN_INTERVAL)
    }

    /// One round: open what answers, then restore every dataset whose sources are all up.
    async fn retry(&mut self) {
        let mut still_down = Vec::new();
        for config in std::mem::take(&mut self.down) {
            match Source::open(&config).await {
                Ok(source) => {
                    tracing::info!(source = %config.name, "source is back; restoring its datasets");
                    self.sources.insert(config.name.clone(), source);
                }
                // This build cannot run it: trying again would not help.
                Err(OpenError::Unsupported(..)) => {}
                Err(e) => {
                    tracing::debug!(source = %config.name, error = %e, "source still unavailable");
                    still_down.push(config);
                }
            }
        }
        self.down = still_down;
        let mut waiting = Vec::new();
        for (workspace, d) in std::mem::take(&mut self.pending) {
            if !super::sources_of(&d).all(|s| self.sources.contains_key(s)) {
                waiting.push((workspace, d));
                continue;
            }
            self.restore(&workspace, &d).await;
        }
        self.pending = waiting;
    }

    async fn restore(&self, workspace: &str, d: &DatasetConfig) {
        let Some(schema) = self.schemas.get(workspace) else {
            return;
        };
        let name = d.name.to_lowercase();
        match super::dataset(d, &self.sources).await {
            Ok(dataset) => match schema.restore(&name, dataset.table) {
                Ok(()) => tracing::info!(workspace, dataset = %name, "dataset restored"),
                Err(e) => {
                    tracing::error!(workspace, dataset = %name, error = %e, "cannot restore dataset")
                }
            },
            Err(errors) => {
                let reason = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::error!(workspace, dataset = %name, %reason, "dataset cannot be planned on its recovered source");
                schema.still_unavailable(&name, reason);
            }
        }
    }
}
