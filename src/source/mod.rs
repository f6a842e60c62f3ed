//! Sources: where a workspace's data lives.
//!
//! Every source, whatever its kind, is opened into a private DataFusion context holding
//! its tables; dataset definitions are planned there and clients never see it directly.
//! A `lake` is read in-process (Parquet and CSV directories, which also hold the embedded
//! demo); `postgres`, `mysql` and `sqlserver` sources are databases whose tables are
//! federated providers, so the part of a query that touches only one of them runs on it as
//! one SQL statement.

pub mod dialect;
pub mod lake;
pub mod mysql;
pub mod postgres;
pub mod sql;
pub mod sqlserver;
pub mod text;
mod tls;

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::{Engine, SourceConfig, SourceKind};
pub use sql::{SourceError, SqlSource};

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The lake directory or one of its tables.
    #[error(transparent)]
    Lake(#[from] lake::LakeError),
    /// The database could not be reached or described.
    #[error(transparent)]
    Sql(#[from] SourceError),
    /// A connector that this build cannot run.
    #[error("source \"{0}\": {1}")]
    Unsupported(String, String),
}

/// An opened source: its tables, registered in a private context.
#[derive(Clone)]
pub struct Source {
    name: String,
    ctx: SessionContext,
    tables: Vec<String>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Open `config`: list a lake's tables, or connect to a database and read its catalog.
    ///
    /// # Errors
    /// [`OpenError`] naming what failed; a database that is down gives
    /// [`SourceError::Unavailable`].
    pub async fn open(config: &SourceConfig) -> Result<Source, OpenError> {
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().with_default_catalog_and_schema("source", "public"),
        );
        let tables = match &config.kind {
            SourceKind::Lake { path, .. } => lake::open(path, &ctx).await?,
            SourceKind::Sql(sql) => {
                let connector: Arc<dyn sql::Connector> = match sql.engine {
                    Engine::Postgres => Arc::new(postgres::Postgres::new(&config.name, sql)?),
                    Engine::MySql => Arc::new(mysql::MySql::new(&config.name, sql)),
                    Engine::SqlServer => Arc::new(sqlserver::SqlServer::new(&config.name, sql)),
                };
                let source = Arc::new(SqlSource::new(&config.name, sql.clone(), connector));
                let mut names = Vec::new();
                for (table, provider) in source.providers().await? {
                    ctx.register_table(table.as_str(), provider)
                        .map_err(|e| OpenError::Unsupported(config.name.clone(), e.to_string()))?;
                    names.push(table);
                }
                names
            }
        };
        Ok(Source {
            name: config.name.clone(),
            ctx,
            tables,
        })
    }

    /// The source's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The private context holding the tables; dataset SQL is planned here.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// A table's provider, to build on (a star schema joins several).
    pub async fn provider(&self, table: &str) -> Option<Arc<dyn TableProvider>> {
        self.ctx.table_provider(table).await.ok()
    }

    /// Make a derived table (such as a dataset's star join) nameable in dataset SQL.
    ///
    /// # Errors
    /// DataFusion's error if the name is taken.
    pub fn register(
        &self,
        name: &str,
        provider: Arc<dyn TableProvider>,
    ) -> datafusion::error::Result<()> {
        self.ctx.register_table(name, provider).map(|_| ())
    }

    /// The table names, sorted.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }
}
