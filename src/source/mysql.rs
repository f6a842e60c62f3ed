//! The `mysql` connector (MySQL and MariaDB): mysql_async's pool, bounded by a semaphore.
//!
//! mysql_async's pool has no wait limit, so a semaphore of `pool_size` permits guards it:
//! a query that cannot get a permit within `pool_timeout` fails with 53300 instead of
//! queueing forever. Sessions run in UTC with `NO_BACKSLASH_ESCAPES` and `PIPES_AS_CONCAT`,
//! so string literals and `||` written by the SQL generator mean what they mean in
//! PostgreSQL. A statement timeout is attached to each statement in the flavour's own
//! syntax (MariaDB `SET STATEMENT max_statement_time`, MySQL `MAX_EXECUTION_TIME`).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, SslOpts, Value};

use super::sql::{send, BatchSender, Connector, Permits, RowSink, SourceError};
use super::text::BinaryText;
use crate::config::{SourceTls, SqlSourceConfig};
use crate::error::SqlState;

/// A bounded pool of connections to one MySQL or MariaDB database.
pub struct MySql {
    name: String,
    opts: Opts,
    pool: Pool,
    permits: Permits,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
    mariadb: OnceLock<bool>,
}

impl std::fmt::Debug for MySql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySql")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MySql {
    /// A pool for `config`; connections are opened on first use.
    pub fn new(name: &str, config: &SqlSourceConfig) -> MySql {
        let constraints = PoolConstraints::new(0, config.pool_size).unwrap_or_default();
        let mut opts = OptsBuilder::default()
            .ip_or_hostname(config.host.clone())
            .tcp_port(config.port)
            .user(Some(config.user.clone()))
            .pass(Some(config.password.clone()))
            .db_name(Some(config.database.clone()))
            .pool_opts(PoolOpts::default().with_constraints(constraints))
            .init(vec![
                "SET time_zone = '+00:00'",
                "SET SESSION TRANSACTION READ ONLY",
                "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'NO_BACKSLASH_ESCAPES', 'PIPES_AS_CONCAT')",
            ]);
        if let SourceTls::Require { ca_file } = &config.tls {
            let mut ssl = SslOpts::default();
            if let Some(ca) = ca_file {
                ssl = ssl.with_root_certs(vec![ca.clone().into()]);
            }
            opts = opts.ssl_opts(ssl);
        }
        let opts = Opts::from(opts);
        MySql {
            name: name.to_owned(),
            pool: Pool::new(opts.clone()),
            opts,
            permits: Permits::new(name, config.pool_size, config.pool_timeout),
            connect_timeout: config.connect_timeout,
            statement_timeout: config.statement_timeout,
            mariadb: OnceLock::new(),
        }
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// A permit and a connection, or 53300 / 08001.
    async fn conn(&self) -> Result<(tokio::sync::OwnedSemaphorePermit, Conn), SourceError> {
        let permit = self.permits.acquire().await?;
        let mut conn = tokio::time::timeout(self.connect_timeout, self.pool.get_conn())
            .await
            .map_err(|_| {
                self.unavailable(format!("no connection within {:?}", self.connect_timeout))
            })?
            .map_err(|e| self.error(e))?;
        if self.mariadb.get().is_none() {
            let version: Option<String> = conn
                .query_first("SELECT VERSION()")
                .await
                .map_err(|e| self.error(e))?;
            let _ = self
                .mariadb
                .set(version.is_some_and(|v| v.to_lowercase().contains("mariadb")));
        }
        Ok((permit, conn))
    }

    fn error(&self, e: mysql_async::Error) -> SourceError {
        match e {
            mysql_async::Error::Server(s) => match server_state(s.code) {
                Some(state) if state == SqlState::CANNOT_CONNECT => self.unavailable(s.message),
                state => SourceError::Statement {
                    source_name: self.name.clone(),
                    sqlstate: state.unwrap_or(SqlState::INTERNAL_ERROR),
                    message: format!("{} (MySQL error {})", s.message, s.code),
                },
            },
            other => self.unavailable(other),
        }
    }

    /// The statement with the configured timeout attached in the flavour's syntax.
    fn with_timeout(&self, sql: &str) -> String {
        match self.statement_timeout {
            None => sql.to_owned(),
            Some(t) if self.mariadb.get().copied().unwrap_or(false) => format!(
                "SET STATEMENT max_statement_time = {:.3} FOR {sql}",
                t.as_secs_f64()
            ),
            Some(t) => match sql.strip_prefix("SELECT ") {
                Some(rest) => format!("SELECT /*+ MAX_EXECUTION_TIME({}) */ {rest}", t.as_millis()),
                None => sql.to_owned(),
            },
        }
    }

    /// Stream the rows of `sql`; `Ok(false)` when the reader went away mid-way.
    async fn stream(
        &self,
        conn: &mut Conn,
        sql: &str,
        schema: SchemaRef,
        tx: &BatchSender,
    ) -> Result<bool, SourceError> {
        let mut result = conn.query_iter(sql).await.map_err(|e| self.error(e))?;
        let mut sink = RowSink::new(&self.name, schema, BinaryText::Raw, tx);
        if let Some(mut rows) = result.stream::<Row>().await.map_err(|e| self.error(e))? {
            while let Some(row) = rows.next().await {
                let row = row.map_err(|e| self.error(e))?;
                let values = (0..row.len()).map(|i| match row.as_ref(i) {
                    Some(Value::Bytes(b)) => Some(b.as_slice()),
                    _ => None,
                });
                if !sink.push(values).await? {
                    return Ok(false);
                }
            }
        }
        sink.finish().await
    }

    /// `KILL QUERY` from a separate connection: the statement's own connection is busy.
    async fn kill(&self, id: u32) {
        let killed = async {
            let mut conn = Conn::new(self.opts.clone()).await?;
            conn.query_drop(format!("KILL QUERY {id}")).await?;
            conn.disconnect().await
        };
        if let Err(e) = tokio::time::timeout(self.connect_timeout, killed).await {
            tracing::warn!(source = %self.name, error = %e, "could not cancel a statement on the source");
        }
    }
}

#[async_trait]
impl Connector for MySql {
    async fn tables(&self, schema: &str) -> Result<BTreeMap<String, Vec<Field>>, SourceError> {
        let (_permit, mut conn) = self.conn().await?;
        let rows: Vec<(String, String, String, String, Option<u64>, Option<u64>, String)> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
                (schema,),
            )
            .await
            .map_err(|e| self.error(e))?;
        let mut tables: BTreeMap<String, Vec<Field>> = BTreeMap::new();
        for (table, column, data_type, column_type, precision, scale, nullable) in rows {
            let ty = arrow_type(&data_type, &column_type, precision, scale);
            tables
                .entry(table)
                .or_default()
                .push(Field::new(column, ty, nullable == "YES"));
        }
        Ok(tables)
    }

    async fn run(&self, sql: String, schema: SchemaRef, tx: BatchSender) {
        let (permit, mut conn) = match self.conn().await {
            Ok(c) => c,
            Err(e) => {
                send(&tx, Err(e.into_datafusion())).await;
                return;
            }
        };
        let id = conn.id();
        let sql = self.with_timeout(&sql);
        let finished = tokio::select! {
            r = self.stream(&mut conn, &sql, schema, &tx) => r,
            () = tx.closed() => Ok(false),
        };
        match finished {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(source = %self.name, "reader gone; canceling the statement on the source");
                self.kill(id).await;
            }
            Err(e) => {
                send(&tx, Err(e.into_datafusion())).await;
            }
        }
        drop(conn);
        drop(permit);
    }
}

/// The Arrow type a MySQL column is read as. Unsigned integers widen so they never
/// overflow; `tinyint(1)` is MySQL's boolean.
pub fn arrow_type(
    data_type: &str,
    column_type: &str,
    precision: Option<u64>,
    scale: Option<u64>,
) -> DataType {
    let unsigned = column_type.contains("unsigned");
    match (data_type, unsigned) {
        ("tinyint", _) if column_type.starts_with("tinyint(1)") => DataType::Boolean,
        ("tinyint", false) => DataType::Int8,
        ("tinyint", true) | ("smallint", false) | ("year", _) => DataType::Int16,
        ("smallint", true) | ("mediumint", _) | ("int", false) => DataType::Int32,
        ("int", true) | ("bigint", false) => DataType::Int64,
        ("bigint", true) => DataType::Decimal128(20, 0),
        ("decimal", _) => match (
            precision.and_then(|p| u8::try_from(p).ok()),
            scale.and_then(|s| i8::try_from(s).ok()),
        ) {
            (Some(p), Some(s)) if p <= 38 => DataType::Decimal128(p, s),
            _ => DataType::Utf8,
        },
        ("float", _) => DataType::Float32,
        ("double", _) => DataType::Float64,
        ("date", _) => DataType::Date32,
        ("datetime", _) => DataType::Timestamp(TimeUnit::Microsecond, None),
        ("timestamp", _) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ("binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit", _) => {
            DataType::Binary
        }
        _ => DataType::Utf8,
    }
}

/// SQLSTATEs for the MySQL server errors biproxy tells apart.
fn server_state(code: u16) -> Option<SqlState> {
    Some(match code {
        1317 | 1969 | 3024 => SqlState::QUERY_CANCELED,
        1146 => SqlState::UNDEFINED_TABLE,
        1054 => SqlState::UNDEFINED_COLUMN,
        1064 => SqlState::SYNTAX_ERROR,
        1305 => SqlState::UNDEFINED_FUNCTION,
        1365 => SqlState::DIVISION_BY_ZERO,
        1040 | 1203 => SqlState::TOO_MANY_CONNECTIONS,
        1044 | 1045 | 1049 => SqlState::CANNOT_CONNECT,
        1142 | 1143 => SqlState::INSUFFICIENT_PRIVILEGE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_integers_widen_and_tinyint1_is_boolean() {
        assert_eq!(
            arrow_type("bigint", "bigint(20) unsigned", None, None),
            DataType::Decimal128(20, 0)
        );
        assert_eq!(
            arrow_type("int", "int(10) unsigned", None, None),
            DataType::Int64
        );
        assert_eq!(
            arrow_type("tinyint", "tinyint(1)", None, None),
            DataType::Boolean
        );
        assert_eq!(
            arrow_type("decimal", "decimal(12,2)", Some(12), Some(2)),
            DataType::Decimal128(12, 2)
        );
        assert_eq!(
            arrow_type("longblob", "longblob", None, None),
            DataType::Binary
        );
    }
}
