//! Throwaway databases on the real PostgreSQL and MariaDB of this machine: one uniquely
//! named database on each, dropped when the fixture goes out of scope (even when the test
//! fails), and a loader that copies Arrow tables into both.

use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use futures::SinkExt;
use mysql_async::prelude::Queryable;
use tokio_postgres::NoTls;

/// Administrative connection to the PostgreSQL server.
pub(crate) const PG_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
/// Administrative connection to the MariaDB server.
pub(crate) const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306";

/// A database of the same name on PostgreSQL and on MariaDB.
pub(crate) struct Databases {
    /// `biproxy_it_<pid>_<n>`: unique per test in this run, recognisable if left behind.
    pub(crate) name: String,
}

impl Databases {
    /// Create both (empty). Panics, failing the test, when a server is not running.
    pub(crate) async fn create() -> Databases {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "biproxy_it_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        pg(PG_ADMIN)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the PostgreSQL test database (is PostgreSQL running?)");
        let mut my = mysql_async::Conn::from_url(MY_ADMIN)
            .await
            .expect("connect to MariaDB (is it running?)");
        my.query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))
        .await
        .expect("create the MariaDB test database");
        my.disconnect().await.ok();
        Databases { name }
    }

    /// The name of a second PostgreSQL database that does not exist until
    /// [`Databases::create_late`]: a source that is down until the test brings it up.
    pub(crate) fn late(&self) -> String {
        format!("{}_late", self.name)
    }

    /// Create the [`Databases::late`] database with `setup` run in it.
    pub(crate) async fn create_late(&self, setup: &str) {
        let late = self.late();
        pg(PG_ADMIN)
            .await
            .batch_execute(&format!("CREATE DATABASE {late}"))
            .await
            .expect("create the late database");
        pg(&format!(
            "host=127.0.0.1 port=5432 user=postgres dbname={late}"
        ))
        .await
        .batch_execute(setup)
        .await
        .expect("set up the late database");
    }

    /// A client of the PostgreSQL database.
    pub(crate) async fn pg(&self) -> tokio_postgres::Client {
        pg(&format!(
            "host=127.0.0.1 port=5432 user=postgres dbname={}",
            self.name
        ))
        .await
    }

    /// A connection to the MariaDB database.
    pub(crate) async fn my(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(format!("{MY_ADMIN}/{}", self.name))
            .await
            .expect("connect to the MariaDB test database")
    }

    /// `[[source]]` sections named `pg_name` and `my_name` for the two databases.
    pub(crate) fn sources_toml(&self, pg_name: &str, my_name: &str, pg_extra: &str) -> String {
        let name = &self.name;
        format!(
            "\n[[source]]\nname = \"{pg_name}\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\n\
             database = \"{name}\"\nuser = \"postgres\"\npassword = \"\"\n{pg_extra}\n\n\
             [[source]]\nname = \"{my_name}\"\nkind = \"mysql\"\nhost = \"127.0.0.1\"\n\
             database = \"{name}\"\nuser = \"root\"\npassword = \"\"\n"
        )
    }

    /// Create `table` on both servers with the batches' schema and copy their rows in:
    /// PostgreSQL by `COPY`, MariaDB by multi-row `INSERT`s.
    pub(crate) async fn load(&self, table: &str, batches: &[RecordBatch]) {
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            panic!("no batches for {table}");
        };
        self.load_pg(
            table,
            &schema,
            &text_rows(batches, "%Y-%m-%d %H:%M:%S%.f%:z"),
        )
        .await;
        // MariaDB's datetime has no zone: time-zoned values go in as their UTC time.
        self.load_my(table, &schema, &text_rows(batches, "%Y-%m-%d %H:%M:%S%.f"))
            .await;
    }

    async fn load_pg(&self, table: &str, schema: &Schema, rows: &[Vec<Option<String>>]) {
        let columns = column_list(schema, pg_type);
        self.pg()
            .await
            .batch_execute(&format!("CREATE TABLE {table} ({columns})"))
            .await
            .unwrap_or_else(|e| panic!("create {table} on PostgreSQL: {e}"));
        self.copy_pg(table, rows).await;
    }

    async fn load_my(&self, table: &str, schema: &Schema, rows: &[Vec<Option<String>>]) {
        let columns = column_list(schema, my_type);
        let mut my = self.my().await;
        my.query_drop(format!("CREATE TABLE {table} ({columns})"))
            .await
            .unwrap_or_else(|e| panic!("create {table} on MariaDB: {e}"));
        my.disconnect().await.ok();
        self.insert_my(table, rows).await;
    }

    /// Copy text rows (`None` = NULL) into an existing PostgreSQL table.
    pub(crate) async fn copy_pg(&self, table: &str, rows: &[Vec<Option<String>>]) {
        let client = self.pg().await;
        let sink = client
            .copy_in(&format!("COPY {table} FROM STDIN"))
            .await
            .expect("start COPY");
        futures::pin_mut!(sink);
        let mut data = String::new();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .map(|v| v.as_deref().map_or_else(|| "\\N".to_owned(), copy_escape))
                .collect();
            data.push_str(&line.join("\t"));
            data.push('\n');
        }
        sink.send(bytes::Bytes::from(data))
            .await
            .expect("COPY data");
        sink.finish().await.expect("finish COPY");
    }

    /// Insert text rows (`None` = NULL) into an existing MariaDB table.
    pub(crate) async fn insert_my(&self, table: &str, rows: &[Vec<Option<String>>]) {
        let mut my = self.my().await;
        for chunk in rows.chunks(2000) {
            let values: Vec<String> = chunk
                .iter()
                .map(|row| {
                    let vals: Vec<String> = row
                        .iter()
                        .map(|v| v.as_deref().map_or_else(|| "NULL".to_owned(), my_literal))
                        .collect();
                    format!("({})", vals.join(","))
                })
                .collect();
            my.query_drop(format!("INSERT INTO {table} VALUES {}", values.join(",")))
                .await
                .unwrap_or_else(|e| panic!("insert into {table} on MariaDB: {e}"));
        }
        my.disconnect().await.ok();
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let admin = pg(PG_ADMIN).await;
                // One statement each: DROP DATABASE cannot share a transaction.
                for db in [name.clone(), format!("{name}_late")] {
                    admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .await
                        .expect("drop a PostgreSQL test database");
                }
                let mut my = mysql_async::Conn::from_url(MY_ADMIN)
                    .await
                    .expect("MariaDB");
                my.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .expect("drop the MariaDB test database");
                my.disconnect().await.ok();
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the test databases {}", self.name);
        }
    }
}

/// A client of a PostgreSQL database.
pub(crate) async fn pg(conn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL ({conn}): {e}"));
    tokio::spawn(connection);
    client
}

fn column_list(schema: &Schema, sql_type: impl Fn(&DataType) -> String) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            let null = if f.is_nullable() { "" } else { " NOT NULL" };
            format!("{} {}{null}", f.name(), sql_type(f.data_type()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn pg_type(t: &DataType) -> String {
    match t {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        other => panic!("no PostgreSQL type for {other}"),
    }
}

fn my_type(t: &DataType) -> String {
    match t {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, _) => "datetime(6)".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar(255)".into(),
        other => panic!("no MariaDB type for {other}"),
    }
}

/// Every value as text (`None` = NULL), timestamps as `YYYY-MM-DD HH:MM:SS[.ffffff]`, and
/// time-zoned ones (in UTC) as `tz_format`.
fn text_rows(batches: &[RecordBatch], tz_format: &str) -> Vec<Vec<Option<String>>> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some(tz_format));
    super::text_rows(batches, &options)
}

fn copy_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn my_literal(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}
