//! The `sqlserver` connector: tiberius (TDS) connections in a small pool of our own.
//!
//! tiberius has no pool, and the statement's only cancel is closing its connection: so a
//! connection goes back to the pool only after a statement that ran to its end, and one
//! whose reader went away, that timed out or that failed is dropped, which makes SQL
//! Server abort the statement. `pool_size` permits bound the connections, and a query
//! that cannot get one within `pool_timeout` fails with 53300. The statement timeout is
//! kept by biproxy (SQL Server has no per-session one). Values are read as text for the
//! same Arrow casts as the other connectors.
//!
//! No SQL Server runs where biproxy is tested: what is verified is the SQL it is sent
//! (golden files) and the connection failures (`tests/it/sources.rs`).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use futures::TryStreamExt;
use tiberius::{AuthMethod, ColumnData, EncryptionLevel, FromSql};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::sql::{send, BatchSender, Connector, Permits, RowSink, SourceError};
use super::text::BinaryText;
use crate::config::{SourceTls, SqlSourceConfig};
use crate::error::SqlState;

type Client = tiberius::Client<Compat<TcpStream>>;

/// A bounded pool of connections to one SQL Server database.
pub struct SqlServer {
    name: String,
    config: tiberius::Config,
    permits: Permits,
    idle: Mutex<Vec<Client>>,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
}

impl std::fmt::Debug for SqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SqlServer {
    /// A pool for `config`; connections are opened on first use.
    pub fn new(name: &str, config: &SqlSourceConfig) -> SqlServer {
        let mut tds = tiberius::Config::new();
        tds.host(&config.host);
        tds.port(config.port);
        tds.database(&config.database);
        tds.application_name("biproxy");
        tds.authentication(AuthMethod::sql_server(&config.user, &config.password));
        match &config.tls {
            SourceTls::Disable => tds.encryption(EncryptionLevel::NotSupported),
            SourceTls::Require { ca_file } => {
                tds.encryption(EncryptionLevel::Required);
                if let Some(ca) = ca_file {
                    tds.trust_cert_ca(ca.to_string_lossy());
                }
            }
        }
        SqlServer {
            name: name.to_owned(),
            config: tds,
            permits: Permits::new(name, config.pool_size, config.pool_timeout),
            idle: Mutex::new(Vec::new()),
            connect_timeout: config.connect_timeout,
            statement_timeout: config.statement_timeout,
        }
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: self.name.clone(),
            message: message.to_string(),
        }
    }

    fn error(&self, e: tiberius::error::Error) -> SourceError {
        match e {
            tiberius::error::Error::Server(token) => SourceError::Statement {
                source_name: self.name.clone(),
                sqlstate: server_state(token.code()),
                message: format!("{} (SQL Server error {})", token.message(), token.code()),
            },
            other => self.unavailable(other),
        }
    }

    /// A permit and a connection (an idle one, or a new one), or 53300 / 08001.
    async fn client(&self) -> Result<(OwnedSemaphorePermit, Client), SourceError> {
        let permit = self.permits.acquire().await?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let client = match idle {
            Some(c) => c,
            None => tokio::time::timeout(self.connect_timeout, self.connect())
                .await
                .map_err(|_| {
                    self.unavailable(format!("no connection within {:?}", self.connect_timeout))
                })??,
        };
        Ok((permit, client))
    }

    /// Return a connection whose statement ran to its end, for the next query.
    fn give_back(&self, client: Client) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(client);
    }

    async fn connect(&self) -> Result<Client, SourceError> {
        let tcp = TcpStream::connect(self.config.get_addr())
            .await
            .map_err(|e| self.unavailable(format!("{}: {e}", self.config.get_addr())))?;
        tcp.set_nodelay(true).map_err(|e| self.unavailable(e))?;
        Client::connect(self.config.clone(), tcp.compat_write())
            .await
            .map_err(|e| self.error(e))
    }

    /// Stream the rows of `sql`; `Ok(false)` when the reader went away mid-way.
    async fn stream(
        &self,
        client: &mut Client,
        sql: &str,
        schema: SchemaRef,
        tx: &BatchSender,
    ) -> Result<bool, SourceError> {
        let mut rows = client
            .simple_query(sql)
            .await
            .map_err(|e| self.error(e))?
            .into_row_stream();
        let mut sink = RowSink::new(&self.name, schema, BinaryText::Raw, tx);
        while let Some(row) = rows.try_next().await.map_err(|e| self.error(e))? {
            let values: Vec<Option<Vec<u8>>> = row.into_iter().map(|c| text(&c)).collect();
            if !sink.push(values.iter().map(Option::as_deref)).await? {
                return Ok(false);
            }
        }
        sink.finish().await
    }

    /// The statement's outcome within the statement timeout.
    async fn run_timed(
        &self,
        client: &mut Client,
        sql: &str,
        schema: SchemaRef,
        tx: &BatchSender,
    ) -> Result<bool, SourceError> {
        let Some(limit) = self.statement_timeout else {
            return self.stream(client, sql, schema, tx).await;
        };
        tokio::time::timeout(limit, self.stream(client, sql, schema, tx))
            .await
            .unwrap_or_else(|_| {
                Err(SourceError::Statement {
                    source_name: self.name.clone(),
                    sqlstate: SqlState::QUERY_CANCELED,
                    message: format!("canceling statement due to statement timeout ({limit:?})"),
                })
            })
    }
}

#[async_trait]
impl Connector for SqlServer {
    async fn tables(&self, schema: &str) -> Result<BTreeMap<String, Vec<Field>>, SourceError> {
        let (_permit, mut client) = self.client().await?;
        let rows = client
            .query(
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE \
                 FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = @P1 ORDER BY TABLE_NAME, ORDINAL_POSITION",
                &[&schema],
            )
            .await
            .map_err(|e| self.error(e))?
            .into_first_result()
            .await
            .map_err(|e| self.error(e))?;
        let mut tables: BTreeMap<String, Vec<Field>> = BTreeMap::new();
        for row in rows {
            let text = |i: usize| row.get::<&str, _>(i).unwrap_or_default().to_owned();
            let precision = row.get::<u8, _>(3);
            let scale = row.get::<i32, _>(4);
            let ty = arrow_type(&text(2), precision, scale);
            tables
                .entry(text(0))
                .or_default()
                .push(Field::new(text(1), ty, text(5) == "YES"));
        }
        self.give_back(client);
        Ok(tables)
    }

    async fn run(&self, sql: String, schema: SchemaRef, tx: BatchSender) {
        let (permit, mut client) = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                send(&tx, Err(e.into_datafusion())).await;
                return;
            }
        };
        let finished = tokio::select! {
            r = self.run_timed(&mut client, &sql, schema, &tx) => r,
            () = tx.closed() => Ok(false),
        };
        match finished {
            Ok(true) => self.give_back(client),
            Ok(false) => {
                tracing::debug!(source = %self.name, "reader gone; closing the connection cancels the statement");
            }
            Err(e) => {
                send(&tx, Err(e.into_datafusion())).await;
            }
        }
        drop(permit);
    }
}

/// The Arrow type a SQL Server column is read as. Unknown types are read as text.
pub fn arrow_type(data_type: &str, precision: Option<u8>, scale: Option<i32>) -> DataType {
    match data_type {
        "bit" => DataType::Boolean,
        // tinyint is unsigned (0..=255).
        "tinyint" | "smallint" => DataType::Int16,
        "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "real" => DataType::Float32,
        "float" => DataType::Float64,
        "decimal" | "numeric" => match (precision, scale.and_then(|s| i8::try_from(s).ok())) {
            (Some(p), Some(s)) if p <= 38 => DataType::Decimal128(p, s),
            _ => DataType::Utf8,
        },
        "money" => DataType::Decimal128(19, 4),
        "smallmoney" => DataType::Decimal128(10, 4),
        "date" => DataType::Date32,
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "datetime" | "datetime2" | "smalldatetime" => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        "datetimeoffset" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// A value as the text the Arrow casts read (`None` = NULL); binary values as they are.
fn text(c: &ColumnData<'static>) -> Option<Vec<u8>> {
    let s = |v: Option<String>| v.map(String::into_bytes);
    match c {
        ColumnData::U8(v) => s(v.map(|x| x.to_string())),
        ColumnData::I16(v) => s(v.map(|x| x.to_string())),
        ColumnData::I32(v) => s(v.map(|x| x.to_string())),
        ColumnData::I64(v) => s(v.map(|x| x.to_string())),
        ColumnData::F32(v) => s(v.map(|x| x.to_string())),
        ColumnData::F64(v) => s(v.map(|x| x.to_string())),
        ColumnData::Bit(v) => s(v.map(|x| x.to_string())),
        ColumnData::String(v) => s(v.as_ref().map(|x| x.to_string())),
        ColumnData::Guid(v) => s(v.map(|x| x.to_string())),
        ColumnData::Binary(v) => v.as_ref().map(|x| x.to_vec()),
        ColumnData::Numeric(v) => s(v.map(|x| x.to_string())),
        ColumnData::Xml(v) => s(v.as_ref().map(|x| x.to_string())),
        ColumnData::Date(_) => s(chrono_text(c, |v: NaiveDate| v.format("%Y-%m-%d"))),
        ColumnData::Time(_) => s(chrono_text(c, |v: NaiveTime| v.format("%H:%M:%S%.f"))),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            s(chrono_text(c, |v: NaiveDateTime| {
                v.format("%Y-%m-%d %H:%M:%S%.f")
            }))
        }
        ColumnData::DateTimeOffset(_) => s(chrono_text(c, |v: DateTime<Utc>| {
            v.format("%Y-%m-%d %H:%M:%S%.f%:z")
        })),
    }
}

/// A date or time value formatted by chrono; `None` for NULL (and for a value tiberius
/// cannot convert, which the column's type rules out).
fn chrono_text<'a, T, D>(c: &'a ColumnData<'static>, format: impl Fn(T) -> D) -> Option<String>
where
    T: FromSql<'a>,
    D: std::fmt::Display,
{
    T::from_sql(c).ok().flatten().map(|v| format(v).to_string())
}

/// SQLSTATEs for the SQL Server errors biproxy tells apart; others are XX000 with the
/// server's message.
fn server_state(code: u32) -> SqlState {
    match code {
        208 => SqlState::UNDEFINED_TABLE,
        207 => SqlState::UNDEFINED_COLUMN,
        102 | 156 => SqlState::SYNTAX_ERROR,
        195 => SqlState::UNDEFINED_FUNCTION,
        8134 => SqlState::DIVISION_BY_ZERO,
        229 | 230 => SqlState::INSUFFICIENT_PRIVILEGE,
        3617 => SqlState::QUERY_CANCELED,
        _ => SqlState::INTERNAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn types_keep_precision_and_tinyint_does_not_overflow() {
        assert_eq!(
            arrow_type("decimal", Some(12), Some(2)),
            DataType::Decimal128(12, 2)
        );
        assert_eq!(arrow_type("tinyint", Some(3), Some(0)), DataType::Int16);
        assert_eq!(
            arrow_type("money", Some(19), Some(4)),
            DataType::Decimal128(19, 4)
        );
        assert_eq!(
            arrow_type("datetimeoffset", None, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(arrow_type("nvarchar", None, None), DataType::Utf8);
        assert_eq!(arrow_type("varbinary", None, None), DataType::Binary);
    }

    #[test]
    fn values_read_as_the_text_arrow_casts() {
        let t = |c: ColumnData<'static>| text(&c).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(t(ColumnData::I32(Some(-7))), Some("-7".into()));
        assert_eq!(t(ColumnData::I64(None)), None);
        assert_eq!(t(ColumnData::Bit(Some(true))), Some("true".into()));
        assert_eq!(
            t(ColumnData::String(Some(Cow::Borrowed("上海")))),
            Some("上海".into())
        );
        assert_eq!(
            t(ColumnData::Numeric(Some(
                tiberius::numeric::Numeric::new_with_scale(12345, 2)
            ))),
            Some("123.45".into())
        );
        let date = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let moment = date.and_hms_micro_opt(10, 0, 0, 250_000).unwrap();
        assert_eq!(t(date.into_sql_value()), Some("2024-03-01".into()));
        assert_eq!(
            t(moment.into_sql_value()),
            Some("2024-03-01 10:00:00.250".into())
        );
    }

    /// What a row from SQL Server holds for a chrono value.
    trait IntoSqlValue {
        fn into_sql_value(self) -> ColumnData<'static>;
    }

    impl<T: tiberius::IntoSql<'static>> IntoSqlValue for T {
        fn into_sql_value(self) -> ColumnData<'static> {
            self.into_sql()
        }
    }
}
