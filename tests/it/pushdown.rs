//! The demo model on database sources: its tables copied into PostgreSQL and MariaDB, the
//! demo's datasets declared a second and third time over them (workspaces `demo_pg` and
//! `demo_my`), and one golden file, `tests/slt/sources/model.slt`, run on all three.
//!
//! Every query record holds for every source, so each model element answers the same rows
//! on PostgreSQL and MariaDB as on the Parquet lake; `onlyif postgres` / `onlyif mysql`
//! records pin the statement each database receives (`EXPLAIN` rows are the pushed SQL).

use std::path::Path;

use biproxy::config;
use biproxy::source::lake::demo;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::slt::run_file;
use crate::support::databases::Databases;
use crate::support::{demo_config_text, demo_dir, TestServer};

/// Copy every demo table into both databases.
async fn load_demo(db: &Databases) {
    let ctx = SessionContext::new();
    for table in demo::TABLES {
        let path = format!("{}/{table}/", demo_dir().display());
        let batches = ctx
            .read_parquet(path, ParquetReadOptions::default())
            .await
            .expect("read a demo table")
            .collect()
            .await
            .expect("collect a demo table");
        db.load(table, &batches).await;
    }
}

/// The demo's `[[dataset]]` sections again, in `workspace` over `source`.
fn datasets_on(workspace: &str, source: &str) -> String {
    let text = config::DEMO_CONFIG;
    let start = text.find("[[dataset]]").expect("the demo has datasets");
    let end = text.find("[[user]]").expect("the demo has users");
    let datasets = text[start..end]
        .replace(
            "workspace = \"demo\"",
            &format!("workspace = \"{workspace}\""),
        )
        .replace("source = \"demo_lake\"", &format!("source = \"{source}\""));
    format!(
        "\n[[workspace]]\nname = \"{workspace}\"\nmembers = [\"alice\", \"bob\", \"carol\", \"dave\"]\n\
         roles = {{ carol = \"admin\" }}\n\n{datasets}"
    )
}

#[tokio::test]
async fn the_demo_model_answers_alike_on_every_source() {
    let db = Databases::create().await;
    load_demo(&db).await;
    let text = format!(
        "{}\n{}\n{}\n{}",
        demo_config_text(""),
        db.sources_toml("demo_pg", "demo_my", ""),
        datasets_on("demo_pg", "demo_pg"),
        datasets_on("demo_my", "demo_my"),
    );
    let config = config::parse(&text, "model-sources.toml", Path::new("."))
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let server = TestServer::with_config(config).await;
    let file = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/slt/sources/model.slt"
    ));
    let mut failures = Vec::new();
    for (workspace, label) in [
        ("demo", "lake"),
        ("demo_pg", "postgres"),
        ("demo_my", "mysql"),
    ] {
        let conn = server.conn_str("carol", "carol", workspace);
        if let Err(e) = run_file(file, &conn, &[label]).await {
            failures.push(format!("on {label}:\n{e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    drop(db);
}
