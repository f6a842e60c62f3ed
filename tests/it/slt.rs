//! Golden SQL files (`tests/slt/*.slt`, sqllogictest format) run through biproxy over the
//! wire. Errors render as `<SQLSTATE>: <message>`, so `statement error 42703: ...` asserts
//! the code, not only the text. Set `BIPROXY_SLT_COMPLETE=1` to rewrite the expected
//! output of every file for review.

use std::path::PathBuf;

use sqllogictest::{
    default_column_validator, default_normalizer, default_validator, AsyncDB, DBOutput,
    DefaultColumnType, Runner,
};
use tokio_postgres::SimpleQueryMessage;

use crate::support::TestServer;

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

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
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

#[tokio::test]
async fn golden_files() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files in tests/slt");
    let complete = std::env::var_os("BIPROXY_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    for file in files {
        // One server (and so one fresh session state) per file.
        let server = TestServer::start().await;
        let conn = server.conn_str("carol", "carol", "demo");
        let mut runner = Runner::new(move || {
            let conn = conn.clone();
            async move {
                let (client, connection) =
                    tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                Ok(Wire { client })
            }
        });
        let result = if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    default_validator,
                    default_normalizer,
                    default_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner
                .run_file_async(&file)
                .await
                .map_err(|e| e.display(false).to_string())
        };
        if let Err(e) = result {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "golden files failed:\n\n{}",
        failures.join("\n\n")
    );
}
