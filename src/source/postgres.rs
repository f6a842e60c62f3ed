//! The `postgres` connector: tokio-postgres behind a deadpool pool.
//!
//! Every connection is opened read-only (`default_transaction_read_only`), in UTC and ISO
//! date style, so the text it returns parses the same way whatever the server's defaults.
//! Results are read with the simple query protocol: one round trip, every value as text.

use std::collections::BTreeMap;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::StreamExt;
use tokio_postgres::{CancelToken, NoTls, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sql::{send, BatchSender, Connector, RowSink, SourceError};
use super::text::BinaryText;
use crate::config::{SourceTls, SqlSourceConfig};
use crate::error::SqlState;

/// A pool of connections to one PostgreSQL database.
pub struct Postgres {
    name: String,
    pool: Pool,
    size: usize,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// A pool for `config`; connections are opened on first use.
    ///
    /// # Errors
    /// An unreadable `ca_file`, or a pool that cannot be built.
    pub fn new(name: &str, config: &SqlSourceConfig) -> Result<Postgres, SourceError> {
        let unavailable = |message: String| SourceError::Unavailable {
            source_name: name.to_owned(),
            message,
        };
        let mut pg = tokio_postgres::Config::new();
        pg.host(&config.host)
            .port(config.port)
            .dbname(&config.database)
            .user(&config.user)
            .password(&config.password)
            .application_name("biproxy")
            .connect_timeout(config.connect_timeout)
            .options(session_options(config));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let (manager, tls) = match &config.tls {
            SourceTls::Disable => (Manager::from_config(pg, NoTls, manager_config), None),
            SourceTls::Require { ca_file } => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = MakeRustlsConnect::new(
                    super::tls::client_config(ca_file.as_deref()).map_err(unavailable)?,
                );
                (
                    Manager::from_config(pg, tls.clone(), manager_config),
                    Some(tls),
                )
            }
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.pool_timeout))
            .create_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Postgres {
            name: name.to_owned(),
            pool,
            size: config.pool_size,
            tls,
        })
    }

    async fn client(&self) -> Result<Object, SourceError> {
        let started = Instant::now();
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                SourceError::PoolExhausted {
                    source_name: self.name.clone(),
                    size: self.size,
                    waited_ms: started.elapsed().as_millis(),
                }
            }
            PoolError::Backend(e) => SourceError::Unavailable {
                source_name: self.name.clone(),
                message: describe(&e),
            },
            other => SourceError::Unavailable {
                source_name: self.name.clone(),
                message: other.to_string(),
            },
        })
    }

    fn statement_error(&self, e: &tokio_postgres::Error) -> SourceError {
        match e.as_db_error() {
            Some(db) => SourceError::Statement {
                source_name: self.name.clone(),
                sqlstate: known_state(db.code().code()),
                message: db.message().to_owned(),
            },
            None => SourceError::Unavailable {
                source_name: self.name.clone(),
                message: describe(e),
            },
        }
    }

    async fn cancel(&self, token: CancelToken) {
        let sent = match &self.tls {
            None => token.cancel_query(NoTls).await,
            Some(tls) => token.cancel_query(tls.clone()).await,
        };
        if let Err(e) = sent {
            tracing::warn!(source = %self.name, error = %e, "could not cancel a statement on the source");
        }
    }

    /// Stream the rows of `sql`; `Ok(false)` when the reader went away mid-way.
    async fn stream(
        &self,
        client: &Object,
        sql: &str,
        schema: SchemaRef,
        tx: &BatchSender,
    ) -> Result<bool, SourceError> {
        let rows = client
            .simple_query_raw(sql)
            .await
            .map_err(|e| self.statement_error(&e))?;
        futures::pin_mut!(rows);
        let mut sink = RowSink::new(&self.name, schema, BinaryText::Hex, tx);
        while let Some(message) = rows.next().await {
            let SimpleQueryMessage::Row(row) = message.map_err(|e| self.statement_error(&e))?
            else {
                continue;
            };
            if !sink
                .push((0..row.len()).map(|i| row.get(i).map(str::as_bytes)))
                .await?
            {
                return Ok(false);
            }
        }
        sink.finish().await
    }
}

#[async_trait]
impl Connector for Postgres {
    async fn tables(&self, schema: &str) -> Result<BTreeMap<String, Vec<Field>>, SourceError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text, t.typname::text, a.atttypmod, a.attnotnull \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') \
                 ORDER BY c.relname, a.attnum",
                &[&schema],
            )
            .await
            .map_err(|e| self.statement_error(&e))?;
        let mut tables: BTreeMap<String, Vec<Field>> = BTreeMap::new();
        for row in rows {
            let (table, column, typname): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let typmod: i32 = row.get(3);
            let not_null: bool = row.get(4);
            tables.entry(table).or_default().push(Field::new(
                column,
                arrow_type(&typname, typmod),
                !not_null,
            ));
        }
        Ok(tables)
    }

    async fn run(&self, sql: String, schema: SchemaRef, tx: BatchSender) {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                send(&tx, Err(e.into_datafusion())).await;
                return;
            }
        };
        let token = client.cancel_token();
        let finished = tokio::select! {
            r = self.stream(&client, &sql, schema, &tx) => r,
            () = tx.closed() => Ok(false),
        };
        match finished {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(source = %self.name, "reader gone; canceling the statement on the source");
                self.cancel(token).await;
                // The connection may still hold the canceled statement's tail; never reuse it.
                drop(Object::take(client));
            }
            Err(e) => {
                send(&tx, Err(e.into_datafusion())).await;
            }
        }
    }
}

/// Session settings that make the text results unambiguous and the session read-only.
fn session_options(config: &SqlSourceConfig) -> String {
    let mut options = String::from(
        "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=3 \
         -c bytea_output=hex -c default_transaction_read_only=on",
    );
    // Statements name tables without their schema (see `SqlSource::remote_name`).
    options.push_str(&format!(
        " -c search_path={}",
        options_escape(&quote_ident(&config.schema))
    ));
    if let Some(t) = config.statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
    }
    options
}

/// An identifier quoted for PostgreSQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A value for the `options` startup parameter, where spaces and backslashes are escaped.
fn options_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(' ', "\\ ")
}

/// The Arrow type a PostgreSQL column is read as. Unknown types are read as text.
pub fn arrow_type(typname: &str, typmod: i32) -> DataType {
    match typname {
        "bool" => DataType::Boolean,
        "int2" => DataType::Int16,
        "int4" | "oid" => DataType::Int32,
        "int8" => DataType::Int64,
        "float4" => DataType::Float32,
        "float8" => DataType::Float64,
        "numeric" => numeric_type(typmod),
        "date" => DataType::Date32,
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "bytea" => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// `numeric(p, s)` keeps its precision and scale; an unconstrained `numeric` is read with
/// 38 digits, 10 after the point.
fn numeric_type(typmod: i32) -> DataType {
    if typmod < 4 {
        return DataType::Decimal128(38, 10);
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let scale = (typmod - 4) & 0xffff;
    match (u8::try_from(precision), i8::try_from(scale)) {
        (Ok(p), Ok(s)) if p <= 38 => DataType::Decimal128(p, s),
        _ => DataType::Utf8,
    }
}

/// The SQLSTATEs a source's error keeps; anything else is reported as XX000 with the
/// source's message.
pub fn known_state(code: &str) -> SqlState {
    [
        SqlState::QUERY_CANCELED,
        SqlState::UNDEFINED_TABLE,
        SqlState::UNDEFINED_COLUMN,
        SqlState::UNDEFINED_FUNCTION,
        SqlState::DIVISION_BY_ZERO,
        SqlState::INVALID_TEXT_REPRESENTATION,
        SqlState::SYNTAX_ERROR,
        SqlState::INSUFFICIENT_PRIVILEGE,
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::DATATYPE_MISMATCH,
    ]
    .into_iter()
    .find(|s| s.0 == code)
    .unwrap_or(if code.starts_with("08") || code.starts_with("57P") {
        SqlState::CANNOT_CONNECT
    } else {
        SqlState::INTERNAL_ERROR
    })
}

/// The driver error with its cause (tokio-postgres puts the useful part in the source).
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_keeps_precision_and_scale() {
        // numeric(12, 2): typmod = (12 << 16 | 2) + 4
        assert_eq!(
            arrow_type("numeric", (12 << 16 | 2) + 4),
            DataType::Decimal128(12, 2)
        );
        assert_eq!(arrow_type("numeric", -1), DataType::Decimal128(38, 10));
        assert_eq!(arrow_type("numeric", (100 << 16) + 4), DataType::Utf8);
        assert_eq!(arrow_type("jsonb", -1), DataType::Utf8);
    }

    #[test]
    fn source_errors_keep_their_sqlstate_when_biproxy_knows_it() {
        assert_eq!(known_state("57014"), SqlState::QUERY_CANCELED);
        assert_eq!(known_state("57P01"), SqlState::CANNOT_CONNECT);
        assert_eq!(known_state("XX001"), SqlState::INTERNAL_ERROR);
    }
}
