//! Golden SQL files (`tests/slt/*.slt`, sqllogictest format) run through biproxy over the
//! wire. Errors render as `<SQLSTATE>: <message>`, so `statement error 42703: ...` asserts
//! the code, not only the text. The rows of an `EXPLAIN` are the statements sent to
//! database sources, one per row as `<source>: <sql>`: that is the part of a plan a golden
//! file pins down (the rest is DataFusion's to change). Set `BIPROXY_SLT_COMPLETE=1` to
//! rewrite the expected output of every file for review.

use std::path::{Path, PathBuf};

use sqllogictest::{
    default_column_validator, default_normalizer, default_validator, AsyncDB, DBOutput,
    DefaultColumnType, Runner,
};
use tokio_postgres::SimpleQueryMessage;

use crate::support::{sent_statements, TestServer};

/// A tokio-postgres client as a sqllogictest database.
struct Wire {
    client: tokio_postgres::Client,
}

/// An error as the golden files spell it: `<SQLSTATE>: <message>`.
#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

impl From<tokio_postgres::Error> for SltError {
    fn from(e: tokio_postgres::Error) -> Self {
        SltError(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl AsyncDB for Wire {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let output = self.run_sql(sql).await?;
        let explain = sql
            .trim_start()
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case("explain"));
        Ok(match output {
            DBOutput::Rows { rows, .. } if explain => DBOutput::Rows {
                types: vec![DefaultColumnType::Text],
                rows: source_statements(&rows),
            },
            other => other,
        })
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// The statements in an `EXPLAIN`'s physical plan, as `<source>: <sql>`.
fn source_statements(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    rows.iter()
        .filter(|r| r.first().is_some_and(|t| t == "physical_plan"))
        .flat_map(|r| sent_statements(r.get(1).map(String::as_str).unwrap_or("")))
        .map(|(name, sql)| vec![format!("{name}: {sql}")])
        .collect()
}

impl Wire {
    async fn run_sql(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let mut columns = None;
        let mut rows = Vec::new();
        let mut affected = 0;
        for message in self.client.simple_query(sql).await? {
            match message {
                SimpleQueryMessage::RowDescription(cols) => columns = Some(cols.len()),
                SimpleQueryMessage::Row(row) => rows.push(
                    (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_owned(),
                            Some("") => "(empty)".to_owned(),
                            Some(v) => v.to_owned(),
                        })
                        .collect(),
                ),
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/slt exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

/// Run (or, with `BIPROXY_SLT_COMPLETE`, rewrite) one golden file on a fresh connection
/// per `conn`, with `labels` for its `onlyif`/`skipif` records.
pub(crate) async fn run_file(file: &Path, conn: &str, labels: &[&str]) -> Result<(), String> {
    let conn = conn.to_owned();
    let mut runner = Runner::new(move || {
        let conn = conn.clone();
        async move {
            let (client, connection) =
                tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            Ok(Wire { client })
        }
    });
    for label in labels {
        runner.add_label(label);
    }
    if std::env::var_os("BIPROXY_SLT_COMPLETE").is_some() {
        runner
            .update_test_file(
                file,
                " ",
                default_validator,
                default_normalizer,
                default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        runner
            .run_file_async(file)
            .await
            .map_err(|e| e.display(false).to_string())
    }
}

#[tokio::test]
async fn golden_files() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files in tests/slt");
    let mut failures = Vec::new();
    for file in files {
        // One server (and so one fresh session state) per file.
        let server = TestServer::start().await;
        let conn = server.conn_str("carol", "carol", "demo");
        if let Err(e) = run_file(&file, &conn, &["lake"]).await {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "golden files failed:\n\n{}",
        failures.join("\n\n")
    );
}
