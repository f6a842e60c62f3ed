//! Test fixtures: a real biproxy on an ephemeral port, the demo data generated once per
//! run, and clients that connect over a real socket.

pub(crate) mod admin;
pub(crate) mod databases;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use biproxy::config::{self, Config};
use biproxy::server::Server;
use biproxy::source::lake::demo::{self, DemoSpec};
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// Order rows in the test data: small enough to generate in a second, large enough that
/// a cross join runs long enough to be cancelled.
pub(crate) const ORDERS: u64 = 20_000;

/// The demo data for tests, generated once and reused across runs (it is reproducible).
pub(crate) fn demo_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("biproxy-it-demo-{ORDERS}"));
        let spec = DemoSpec {
            orders: ORDERS,
            ..DemoSpec::default()
        };
        demo::ensure(&dir, &spec).expect("generate the test demo data");
        dir
    })
}

/// The built-in demo config, pointed at the test data and an ephemeral port. `extra`
/// is TOML appended to `[server]`.
pub(crate) fn demo_config(server_extra: &str) -> Config {
    let text = demo_config_text(server_extra);
    config::parse(&text, "test.toml", Path::new(".")).expect("test config is valid")
}

/// The text of [`demo_config`], for tests that append sections to it.
pub(crate) fn demo_config_text(server_extra: &str) -> String {
    config::DEMO_CONFIG
        .replace("listen = \"127.0.0.1:15432\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:15433\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "statement_timeout = \"0\"",
            &format!("statement_timeout = \"0\"\n{server_extra}"),
        )
        .replace(
            "path = \"data/demo\"",
            &format!("path = {:?}", demo_dir().display().to_string()),
        )
        .lines()
        .filter(|l| !l.starts_with("demo = {"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A biproxy serving on 127.0.0.1 with an ephemeral port; stops when dropped.
pub(crate) struct TestServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Where its admin interface listens, if the config has `[admin]`.
    pub(crate) admin: Option<SocketAddr>,
    stop: CancellationToken,
}

impl TestServer {
    /// Start the demo workspace over the test data.
    pub(crate) async fn start() -> TestServer {
        TestServer::with_config(demo_config("")).await
    }

    /// Start with a given config, on its own multi-threaded runtime as in production, so
    /// the engine's work never competes with the test's client for one thread.
    pub(crate) async fn with_config(config: Config) -> TestServer {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let server = Server::bind(config).await.expect("server starts");
                let addr = server.local_addr().expect("bound address");
                let admin = server.admin_addr();
                let stop = server.shutdown_token();
                let _ = tx.send((addr, admin, stop));
                server.run().await;
            });
        });
        let (addr, admin, stop) = rx.await.expect("server thread reports its address");
        TestServer { addr, admin, stop }
    }

    /// A libpq-style connection string.
    pub(crate) fn conn_str(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            self.addr.port()
        )
    }

    /// Connect as a demo user (password = name) to `demo`.
    pub(crate) async fn connect(&self, user: &str) -> Client {
        self.try_connect(user, user, "demo")
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
    }

    /// Connect, returning the error if the server refuses.
    pub(crate) async fn try_connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.conn_str(user, password, db), NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The SQLSTATE of a failed statement or login, panicking with the error otherwise.
pub(crate) fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.code()
        .unwrap_or_else(|| panic!("expected a server error with a SQLSTATE, got: {err:?}"))
        .code()
        .to_owned()
}

/// Run `sql` directly on the raw Parquet files with DataFusion, bypassing biproxy, to
/// compute expected results independently. Returns text rows.
pub(crate) async fn direct(sql: &str) -> Vec<Vec<String>> {
    use datafusion::arrow::util::display::FormatOptions;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let ctx = SessionContext::new();
    for table in demo::TABLES {
        let path = format!("{}/{table}/", demo_dir().display());
        ctx.register_parquet(table, &path, ParquetReadOptions::default())
            .await
            .expect("register raw table");
    }
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    text_rows(&batches, &FormatOptions::default())
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect()
}

/// Every value of `batches` as text, `None` for NULL.
pub(crate) fn text_rows(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    options: &datafusion::arrow::util::display::FormatOptions,
) -> Vec<Vec<Option<String>>> {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::util::display::ArrayFormatter;
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), options).expect("formatter"))
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| (!c.is_null(r)).then(|| f.value(r).to_string()))
                    .collect(),
            );
        }
    }
    rows
}

/// Text rows of a simple query through biproxy (NULL as "NULL").
pub(crate) async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    try_rows(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

/// Text rows of a simple query (NULL as "NULL"), or the error.
pub(crate) async fn try_rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<Vec<String>>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The statements a physical plan's text sends to database sources, as (source, SQL): the
/// SQL after the engine's own rewriting (`rewritten_executor_sql`), else the generated one.
pub(crate) fn sent_statements(plan: &str) -> Vec<(String, String)> {
    plan.lines()
        .filter_map(|line| {
            let name = line.split(" name=").nth(1)?.split(' ').next()?;
            let generated = line.split(" base_sql=").nth(1)?;
            let sql = generated
                .split(" rewritten_executor_sql=")
                .last()?
                .split(" rewritten_")
                .next()?;
            Some((name.to_owned(), sql.to_owned()))
        })
        .collect()
}

/// Expected rows written as string literals.
pub(crate) fn table<const N: usize>(rows: &[[&str; N]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
        .collect()
}

/// The plan lines of `EXPLAIN sql`, one per line.
pub(crate) async fn explain(client: &Client, sql: &str) -> String {
    rows(client, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}
