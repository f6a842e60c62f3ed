//! Database sources: what PostgreSQL, MySQL and SQL Server have in common.
//!
//! A [`SqlSource`] is a pool of connections to one database plus the dialect its SQL is
//! written in. Its tables are registered as federated table providers, so the planner can
//! cut out the part of a query that touches only this source and send it as one statement
//! (see `plan::pushdown`). Rows come back as a stream of Arrow batches produced by a task
//! that owns the pooled connection: when the client cancels or a statement timeout fires,
//! the stream is dropped, the task sees its channel close and cancels the statement on the
//! source too, so a long query does not keep running where nobody waits for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{PhysicalExpr, SendableRecordBatchStream};
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::sql::AstAnalyzer;
use datafusion_federation::sql::{SQLExecutor, SQLFederationProvider, SQLTableSource};
use datafusion_federation::FederatedTableProviderAdaptor;
use tokio::sync::mpsc;

use super::text::{BinaryText, TextBatch, BATCH_ROWS};
use crate::config::{Engine, SqlSourceConfig};
use crate::error::SqlState;

/// Why a source could not answer. Each carries the SQLSTATE the client receives.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No connection could be opened (down, refused, bad credentials, timeout).
    #[error("source \"{source_name}\" is unavailable: {message}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// The driver's reason.
        message: String,
    },
    /// Every pooled connection stayed busy for the whole `pool_timeout`.
    #[error("source \"{source_name}\" is busy: all {size} connections stayed in use for {waited_ms} ms (raise pool_size or pool_timeout)")]
    PoolExhausted {
        /// The source.
        source_name: String,
        /// Pool size.
        size: usize,
        /// How long the query waited.
        waited_ms: u128,
    },
    /// The source ran the statement and reported an error.
    #[error("source \"{source_name}\" failed: {message}")]
    Statement {
        /// The source.
        source_name: String,
        /// The SQLSTATE biproxy reports for it.
        sqlstate: SqlState,
        /// The source's message.
        message: String,
    },
    /// The source answered with something biproxy cannot represent.
    #[error("source \"{source_name}\" returned data biproxy cannot read: {message}")]
    Data {
        /// The source.
        source_name: String,
        /// What went wrong.
        message: String,
    },
}

impl SourceError {
    /// The SQLSTATE for the client.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            SourceError::Unavailable { .. } => SqlState::CANNOT_CONNECT,
            SourceError::PoolExhausted { .. } => SqlState::TOO_MANY_CONNECTIONS,
            SourceError::Statement { sqlstate, .. } => *sqlstate,
            SourceError::Data { .. } => SqlState::INVALID_TEXT_REPRESENTATION,
        }
    }

    /// Wrap for DataFusion, which carries it to [`crate::Error::from_datafusion`].
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

/// Where rows go: the channel to the query's stream.
pub type BatchSender = mpsc::Sender<DfResult<RecordBatch>>;

/// What a database driver provides. Implemented once per engine.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The columns of every table and view in `schema`, as Arrow fields.
    async fn tables(&self, schema: &str) -> Result<BTreeMap<String, Vec<Field>>, SourceError>;

    /// Run `sql` and send its rows as batches of `schema` on `tx`; when `tx` closes before
    /// the end, cancel the statement on the source.
    async fn run(&self, sql: String, schema: SchemaRef, tx: BatchSender);
}

/// A database source: a pool, a dialect and the tables found in its schema.
#[derive(Debug)]
pub struct SqlSource {
    name: String,
    config: SqlSourceConfig,
    connector: Arc<dyn Connector>,
}

impl SqlSource {
    /// A source over `connector`. Nothing is connected yet.
    pub fn new(name: &str, config: SqlSourceConfig, connector: Arc<dyn Connector>) -> SqlSource {
        SqlSource {
            name: name.to_owned(),
            config,
            connector,
        }
    }

    /// The source's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its engine.
    pub fn engine(&self) -> Engine {
        self.config.engine
    }

    /// How statements name `table`: as the plan does, without its schema, wherever the
    /// connection reaches the schema by default (PostgreSQL sets `search_path` to it; a
    /// MySQL schema is the database connected to; SQL Server's default is `dbo`). The SQL
    /// generator then leaves the plan's names and aliases as they are, and statements (and
    /// golden files) do not depend on the database's name.
    fn remote_name(&self, table: &str) -> TableReference {
        let config = &self.config;
        let by_default = match config.engine {
            Engine::Postgres => true,
            Engine::MySql => config.schema == config.database,
            Engine::SqlServer => config.schema.eq_ignore_ascii_case("dbo"),
        };
        if by_default {
            TableReference::bare(table)
        } else {
            TableReference::partial(config.schema.as_str(), table)
        }
    }

    /// Discover the tables of the configured schema and wrap each as a federated provider.
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] when the source cannot be reached.
    pub async fn providers(
        self: &Arc<Self>,
    ) -> Result<BTreeMap<String, Arc<dyn TableProvider>>, SourceError> {
        let tables = self.connector.tables(&self.config.schema).await?;
        let federation = Arc::new(SQLFederationProvider::new(
            Arc::clone(self) as Arc<dyn SQLExecutor>
        ));
        Ok(tables
            .into_iter()
            .map(|(table, fields)| {
                let remote = self.remote_name(&table);
                let schema = Arc::new(Schema::new(fields));
                let source =
                    SQLTableSource::new_with_schema(Arc::clone(&federation), remote.into(), schema);
                let provider: Arc<dyn TableProvider> =
                    Arc::new(FederatedTableProviderAdaptor::new(Arc::new(source)));
                (table.to_lowercase(), provider)
            })
            .collect())
    }
}

/// The identity the federation rule groups scans by: same string, same source, one statement.
pub fn compute_context(engine: Engine, name: &str) -> String {
    format!("{}:{name}", engine.name())
}

#[async_trait]
impl SQLExecutor for SqlSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn compute_context(&self) -> Option<String> {
        Some(compute_context(self.config.engine, &self.name))
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        super::dialect::for_engine(self.config.engine)
    }

    fn ast_analyzer(&self) -> Option<AstAnalyzer> {
        // The SQL generator writes LIMIT, which SQL Server does not have.
        (self.config.engine == Engine::SqlServer)
            .then(|| Box::new(super::dialect::sql_server_limits) as AstAnalyzer)
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> DfResult<SendableRecordBatchStream> {
        tracing::debug!(source = %self.name, sql = query, "pushing down");
        let (tx, rx) = mpsc::channel(2);
        let connector = Arc::clone(&self.connector);
        let (sql, rows_schema) = (query.to_owned(), Arc::clone(&schema));
        tokio::spawn(async move { connector.run(sql, rows_schema, tx).await });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    async fn table_names(&self) -> DfResult<Vec<String>> {
        let tables = self
            .connector
            .tables(&self.config.schema)
            .await
            .map_err(SourceError::into_datafusion)?;
        Ok(tables.into_keys().collect())
    }

    async fn get_table_schema(&self, table_name: &str) -> DfResult<SchemaRef> {
        let mut tables = self
            .connector
            .tables(&self.config.schema)
            .await
            .map_err(SourceError::into_datafusion)?;
        let fields = tables.remove(table_name).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "source \"{}\" has no table \"{table_name}\"",
                self.name
            ))
        })?;
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// A bound on a source's connections, for drivers whose pool cannot time out a wait: at
/// most `size` in use, and a query that cannot get one within `timeout` fails with 53300
/// instead of queueing forever.
#[derive(Debug)]
pub struct Permits {
    source_name: String,
    semaphore: Arc<tokio::sync::Semaphore>,
    size: usize,
    timeout: std::time::Duration,
}

impl Permits {
    /// `size` permits for `source_name`, waited for at most `timeout`.
    pub fn new(source_name: &str, size: usize, timeout: std::time::Duration) -> Permits {
        Permits {
            source_name: source_name.to_owned(),
            semaphore: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            timeout,
        }
    }

    /// A permit, held for as long as the connection is in use.
    ///
    /// # Errors
    /// [`SourceError::PoolExhausted`] after the wait.
    pub async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, SourceError> {
        let started = std::time::Instant::now();
        let exhausted = || SourceError::PoolExhausted {
            source_name: self.source_name.clone(),
            size: self.size,
            waited_ms: started.elapsed().as_millis(),
        };
        tokio::time::timeout(self.timeout, Arc::clone(&self.semaphore).acquire_owned())
            .await
            .map_err(|_| exhausted())?
            .map_err(|_| exhausted())
    }
}

/// Send a batch unless the reader is gone; `false` means stop (and cancel on the source).
pub async fn send(tx: &BatchSender, item: DfResult<RecordBatch>) -> bool {
    tx.send(item).await.is_ok()
}

/// The read loop every connector shares: text rows in, full batches out to the query's
/// stream. `Ok(false)` from [`RowSink::push`] or [`RowSink::finish`] means the reader
/// went away, and the connector should cancel the statement on its source.
pub struct RowSink<'a> {
    source_name: &'a str,
    batch: TextBatch,
    tx: &'a BatchSender,
}

impl<'a> RowSink<'a> {
    /// A sink for rows of `schema`, sent on `tx`.
    pub fn new(
        source_name: &'a str,
        schema: SchemaRef,
        binary: BinaryText,
        tx: &'a BatchSender,
    ) -> RowSink<'a> {
        RowSink {
            source_name,
            batch: TextBatch::new(schema, binary),
            tx,
        }
    }

    /// Add one row (each column's text, `None` = NULL); sends the batch when it is full.
    ///
    /// # Errors
    /// [`SourceError::Data`] for a value the column's type cannot hold.
    pub async fn push<'v>(
        &mut self,
        values: impl Iterator<Item = Option<&'v [u8]>>,
    ) -> Result<bool, SourceError> {
        self.batch.push(values).map_err(|e| self.data(&e))?;
        if self.batch.len() < BATCH_ROWS {
            return Ok(true);
        }
        self.flush().await
    }

    /// Send what is left.
    ///
    /// # Errors
    /// As [`RowSink::push`].
    pub async fn finish(mut self) -> Result<bool, SourceError> {
        if self.batch.is_empty() {
            return Ok(true);
        }
        self.flush().await
    }

    async fn flush(&mut self) -> Result<bool, SourceError> {
        let batch = self.batch.finish().map_err(|e| self.data(&e))?;
        Ok(send(self.tx, Ok(batch)).await)
    }

    fn data(&self, e: &datafusion::arrow::error::ArrowError) -> SourceError {
        SourceError::Data {
            source_name: self.source_name.to_owned(),
            message: e.to_string(),
        }
    }
}
