//! The `public` schema of a workspace: its datasets, and the ones whose source is down.
//!
//! A dataset whose source could not be reached at start-up is not listed (catalog
//! queries never touch it), but naming it in a query fails with 08001 and the source's
//! reason instead of "relation does not exist", so the user learns what is wrong.

use std::collections::HashMap;
use std::sync::Arc;

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
    unavailable: HashMap<String, Unavailable>,
}

impl DatasetSchema {
    /// A schema that answers 08001 for each of `unavailable`.
    pub fn new(unavailable: &[Unavailable]) -> DatasetSchema {
        DatasetSchema {
            tables: MemorySchemaProvider::new(),
            unavailable: unavailable
                .iter()
                .map(|u| (u.dataset.clone(), u.clone()))
                .collect(),
        }
    }
}

#[async_trait]
impl SchemaProvider for DatasetSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(u) = self.unavailable.get(name) {
            return Err(SourceError::Unavailable {
                source_name: u.source.clone(),
                message: format!("dataset \"{}\" cannot be served: {}", u.dataset, u.reason),
            }
            .into_datafusion());
        }
        self.tables.table(name).await
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
        self.tables.table_exist(name) || self.unavailable.contains_key(name)
    }
}
