//! SQL Server: no live server runs here, so what is checked is the SQL biproxy would send.
//! Each TPC-H query is planned over a SQL Server source whose tables are described from
//! `tests/tpch/schema.sql` and shown as datasets (views, as in a workspace), and the
//! statements pushed to it are compared with the golden
//! files `tests/tpch/sqlserver/qNN.sql` (`BIPROXY_SLT_COMPLETE=1` rewrites them for
//! review).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use biproxy::config::{Engine, SourceTls, SqlSourceConfig};
use biproxy::plan::pushdown::PushdownPlanner;
use biproxy::source::sql::{BatchSender, Connector};
use biproxy::source::{SourceError, SqlSource};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::datasource::ViewTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::displayable;
use datafusion::prelude::SessionContext;

use crate::support::sent_statements;
use crate::tpch::{arrow_schemas, queries, tpch_dir};

/// A SQL Server known only by its tables' columns.
#[derive(Debug)]
struct Described {
    tables: BTreeMap<String, Vec<Field>>,
}

#[async_trait]
impl Connector for Described {
    async fn tables(&self, _schema: &str) -> Result<BTreeMap<String, Vec<Field>>, SourceError> {
        Ok(self.tables.clone())
    }

    async fn run(&self, _sql: String, _schema: SchemaRef, tx: BatchSender) {
        let error = SourceError::Unavailable {
            source_name: "mssql".into(),
            message: "no SQL Server to run on".into(),
        };
        let _ = tx.send(Err(error.into_datafusion())).await;
    }
}

fn config() -> SqlSourceConfig {
    SqlSourceConfig {
        engine: Engine::SqlServer,
        host: "sqlserver.invalid".into(),
        port: 1433,
        database: "tpch".into(),
        schema: "dbo".into(),
        user: "sa".into(),
        password: String::new(),
        pool_size: 1,
        pool_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        statement_timeout: None,
        retry_interval: Duration::from_secs(10),
        tls: SourceTls::Disable,
    }
}

async fn context() -> SessionContext {
    let schema_sql = std::fs::read_to_string(tpch_dir().join("schema.sql")).expect("schema.sql");
    let tables = arrow_schemas(&schema_sql)
        .into_iter()
        .map(|(name, schema)| {
            let fields = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            (name, fields)
        })
        .collect();
    let source = Arc::new(SqlSource::new(
        "mssql",
        config(),
        Arc::new(Described { tables }),
    ));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_query_planner(Arc::new(PushdownPlanner::default()))
        .build();
    let ctx = SessionContext::new_with_state(state);
    // As in a workspace: each table is a dataset, a view planned on the source's tables.
    let tables = SessionContext::new();
    for (name, provider) in source.providers().await.expect("described tables") {
        tables
            .register_table(name.as_str(), provider)
            .expect("register");
        let plan = tables
            .sql(&format!("SELECT * FROM {name}"))
            .await
            .expect("dataset plan")
            .into_unoptimized_plan();
        ctx.register_table(name.as_str(), Arc::new(ViewTable::new(plan, None)))
            .expect("register dataset");
    }
    ctx
}

#[tokio::test]
async fn tpch_sql_for_sql_server_is_golden() {
    let ctx = context().await;
    let dir = tpch_dir().join("sqlserver");
    let complete = std::env::var_os("BIPROXY_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    // The 22 TPC-H queries, and two row limits (TPC-H's own limits sit above sorts on
    // nullable results, which SQL Server would order differently, so they stay here).
    let mut cases: Vec<(String, String)> = queries()
        .into_iter()
        .map(|(n, sql)| (format!("q{n:02}"), sql))
        .collect();
    cases.push((
        "top_n".into(),
        "SELECT n_name FROM nation ORDER BY n_nationkey DESC LIMIT 5 OFFSET 2".into(),
    ));
    cases.push(("limit".into(), "SELECT n_name FROM nation LIMIT 5".into()));
    for (n, sql) in cases {
        let plan = ctx
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("{n} plans: {e}"))
            .create_physical_plan()
            .await
            .unwrap_or_else(|e| panic!("{n} physical plan: {e}"));
        let text = displayable(plan.as_ref()).indent(true).to_string();
        let got: Vec<String> = sent_statements(&text)
            .into_iter()
            .map(|(_, sql)| sql)
            .collect();
        assert!(
            !got.is_empty(),
            "{n}: nothing pushed to SQL Server:\n{text}"
        );
        let rendered = format!(
            "-- {n} as sent to SQL Server, one statement per line\n{}\n",
            got.join("\n")
        );
        let path: PathBuf = dir.join(format!("{n}.sql"));
        if complete {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, &rendered).expect("write golden file");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != rendered {
            failures.push(format!(
                "{}:\n--- expected\n{want}\n--- got\n{rendered}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
