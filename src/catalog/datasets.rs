//! The `public` schema of a workspace: its datasets, and the ones whose source is down.
//!
//! A dataset whose source could not be reached at start-up is not listed (catalog
//! queries never touch it), but naming it in a query fails with 08001 and the source's
//! reason instead of "relation does not exist", so the user learns what is wrong. When
//! the source answers again, [`DatasetSchema::restore`] puts the dataset in place; every
//! session shares this schema, so open sessions see it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;

use crate::source::SourceError;

/// A dataset that cannot be served: its source was unavailable.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// The dataset's name.
    pub dataset: String,
    /// Its source.
    pub source: String,
    /// Why the source could not be reached.
    pub reason: String,
}

/// Datasets by name, plus the unavailable ones.
#[derive(Debug, Default)]
pub struct DatasetSchema {
    tables: MemorySchemaProvider,
    unavailable: RwLock<HashMap<String, Unavailable>>,
    /// Datasets now answered from a local copy: looked up first, replaced in one write.
    replaced: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
    /// Counts the replacements and restorations, so that a statement planned before one
    /// knows to plan again.
    version: AtomicU64,
}

impl DatasetSchema {
    /// A schema that answers 08001 for each of `unavailable`.
    pub fn new(unavailable: &[Unavailable]) -> DatasetSchema {
        DatasetSchema {
            tables: MemorySchemaProvider::new(),
            unavailable: RwLock::new(
                unavailable
                    .iter()
                    .map(|u| (u.dataset.clone(), u.clone()))
                    .collect(),
            ),
            replaced: RwLock::default(),
            version: AtomicU64::new(0),
        }
    }

    /// Changes whenever a dataset is answered by another table than before. A plan holds
    /// the tables it was planned with: one made at an older version may read a copy that
    /// has since been replaced, or the source where a copy is now ready.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Answer `dataset` with `table` from now on, atomically: a query planned before
    /// keeps the table it was planned with; every query planned after gets the new one.
    pub fn replace(&self, dataset: &str, table: Arc<dyn TableProvider>) {
        self.replaced
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dataset.to_owned(), table);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Serve `dataset` from now on: its source is back.
    ///
    /// # Errors
    /// Never in practice (the in-memory schema accepts every table).
    pub fn restore(&self, dataset: &str, table: Arc<dyn TableProvider>) -> DfResult<()> {
        self.tables.register_table(dataset.to_owned(), table)?;
        self.write().remove(dataset);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Keep answering 08001 for `dataset`, now with `reason`.
    pub fn still_unavailable(&self, dataset: &str, reason: String) {
        if let Some(u) = self.write().get_mut(dataset) {
            u.reason = reason;
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Unavailable>> {
        self.unavailable
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Unavailable>> {
        self.unavailable
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl SchemaProvider for DatasetSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let unavailable = self.read().get(name).cloned();
        if let Some(u) = unavailable {
            return Err(SourceError::Unavailable {
                source_name: u.source,
                message: format!("dataset \"{}\" cannot be served: {}", u.dataset, u.reason),
            }
            .into_datafusion());
        }
        let replaced = self
            .replaced
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned();
        match replaced {
            Some(table) => Ok(Some(table)),
            None => self.tables.table(name).await,
        }
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.tables.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.tables.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.table_exist(name) || self.read().contains_key(name)
    }
}
