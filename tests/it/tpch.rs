//! TPC-H differential suite: the 22 queries of `tests/tpch/` through biproxy on each source
//! against the same query run directly on that source.
//!
//! Data: scale factor 0.01 from `tpchgen` (the dbgen algorithm), loaded into a throwaway
//! PostgreSQL and MariaDB database and written as Parquet for a lake source. Workspaces
//! `tpch_lake`, `tpch_pg` and `tpch_my` each show the eight tables as datasets. Each
//! query's rows through biproxy must equal the direct rows — PostgreSQL's for the lake and
//! PostgreSQL sources, MariaDB's for the MySQL source — value by value, with numbers equal
//! to 1e-9 relative (engines print decimals with different scales) and `char(n)` padding
//! ignored. Queries that are known not to match are listed with the reason in
//! [`KNOWN_DIFFERENCES`]; the test fails if one of them starts matching, so the list stays
//! true.

use std::path::{Path, PathBuf};

use biproxy::config;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use datafusion::sql::sqlparser::ast::{ColumnDef, DataType as SqlType, ExactNumberInfo, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use mysql_async::prelude::Queryable;

use crate::support::databases::Databases;
use crate::support::{demo_config_text, try_rows, TestServer};

const SCALE_FACTOR: f64 = 0.01;

/// (source label, query number, why it does not match). Empty when every query matches.
const KNOWN_DIFFERENCES: &[(&str, usize, &str)] = &[];

pub(crate) fn tpch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tpch")
}

/// The eight tables as `.tbl` text (dbgen's format, trailing `|` removed).
fn generate() -> Vec<(&'static str, String)> {
    use tpchgen::generators::*;
    fn text<T: std::fmt::Display>(rows: impl Iterator<Item = T>) -> String {
        let mut out = String::new();
        for row in rows {
            let line = row.to_string();
            out.push_str(line.strip_suffix('|').unwrap_or(&line));
            out.push('\n');
        }
        out
    }
    let sf = SCALE_FACTOR;
    vec![
        ("region", text(RegionGenerator::new(sf, 1, 1).iter())),
        ("nation", text(NationGenerator::new(sf, 1, 1).iter())),
        ("supplier", text(SupplierGenerator::new(sf, 1, 1).iter())),
        ("customer", text(CustomerGenerator::new(sf, 1, 1).iter())),
        ("part", text(PartGenerator::new(sf, 1, 1).iter())),
        ("partsupp", text(PartSuppGenerator::new(sf, 1, 1).iter())),
        ("orders", text(OrderGenerator::new(sf, 1, 1).iter())),
        ("lineitem", text(LineItemGenerator::new(sf, 1, 1).iter())),
    ]
}

/// `tests/tpch/schema.sql` as Arrow schemas, by table.
pub(crate) fn arrow_schemas(schema_sql: &str) -> Vec<(String, Schema)> {
    let statements = Parser::parse_sql(&GenericDialect {}, schema_sql).expect("schema.sql parses");
    statements
        .into_iter()
        .filter_map(|s| match s {
            Statement::CreateTable(t) => Some((
                t.name.to_string(),
                Schema::new(t.columns.iter().map(arrow_field).collect::<Vec<_>>()),
            )),
            _ => None,
        })
        .collect()
}

fn arrow_field(c: &ColumnDef) -> Field {
    let ty = match &c.data_type {
        SqlType::Integer(_) | SqlType::Int(_) => DataType::Int32,
        SqlType::BigInt(_) => DataType::Int64,
        SqlType::Decimal(ExactNumberInfo::PrecisionAndScale(p, s))
        | SqlType::Numeric(ExactNumberInfo::PrecisionAndScale(p, s)) => {
            DataType::Decimal128(*p as u8, *s as i8)
        }
        SqlType::Date => DataType::Date32,
        _ => DataType::Utf8,
    };
    Field::new(c.name.value.clone(), ty, false)
}

/// Write each table as Parquet under `dir/<table>/`.
async fn write_lake(dir: &Path, tables: &[(&str, String)], schemas: &[(String, Schema)]) {
    let ctx = SessionContext::new();
    for (name, text) in tables {
        let tbl = dir.join(format!("{name}.tbl"));
        std::fs::write(&tbl, text).expect("write .tbl");
        let schema = &schemas.iter().find(|(n, _)| n == name).expect("schema").1;
        let read = CsvReadOptions::new()
            .has_header(false)
            .delimiter(b'|')
            .file_extension(".tbl")
            .schema(schema);
        let df = ctx
            .read_csv(tbl.to_string_lossy().as_ref(), read)
            .await
            .expect("read .tbl");
        let out = dir.join(name);
        df.write_parquet(
            &format!("{}/", out.display()),
            DataFrameWriteOptions::new(),
            None,
        )
        .await
        .expect("write parquet");
        std::fs::remove_file(&tbl).expect("remove .tbl");
    }
}

async fn load_databases(db: &Databases, schema_sql: &str, tables: &[(&str, String)]) {
    let pg = db.pg().await;
    pg.batch_execute(schema_sql)
        .await
        .expect("TPC-H schema on PostgreSQL");
    let mut my = db.my().await;
    my.query_drop(schema_sql)
        .await
        .expect("TPC-H schema on MariaDB");
    my.disconnect().await.ok();
    for (name, text) in tables {
        let rows: Vec<Vec<Option<String>>> = text
            .lines()
            .map(|line| line.split('|').map(|v| Some(v.to_owned())).collect())
            .collect();
        db.copy_pg(name, &rows).await;
        db.insert_my(name, &rows).await;
    }
    pg.batch_execute("ANALYZE").await.expect("analyze");
}

fn workspace(name: &str, source: &str, tables: &[(&str, String)]) -> String {
    let mut out = format!("\n[[workspace]]\nname = \"{name}\"\nmembers = [\"carol\"]\n");
    for (table, _) in tables {
        out.push_str(&format!(
            "\n[[dataset]]\nworkspace = \"{name}\"\nname = \"{table}\"\nsource = \"{source}\"\ntable = \"{table}\"\n"
        ));
    }
    out
}

/// Text rows of a query through biproxy or directly on PostgreSQL, or the error as
/// `SQLSTATE: message`.
async fn pg_rows(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<Vec<String>>, String> {
    try_rows(client, sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
}

/// Text rows of a query directly on MariaDB.
async fn my_rows(conn: &mut mysql_async::Conn, sql: &str) -> Vec<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("direct on MariaDB: {e}\n{sql}"));
    rows.into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => "NULL".to_owned(),
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.as_sql(true).trim_matches('\'').to_owned(),
                })
                .collect()
        })
        .collect()
}

/// Whether two values agree: equal text after removing `char(n)` padding, or numbers equal
/// at the coarser of the two printed scales, within one unit of its last digit (engines
/// print averages and ratios with different scales, and one truncates where another
/// rounds).
fn same_value(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end(), b.trim_end());
    if a == b {
        return true;
    }
    let scale = |v: &str| v.split_once('.').map_or(0, |(_, f)| f.len());
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            let unit = 10f64.powi(-(scale(a).min(scale(b)) as i32));
            (x - y).abs() <= unit * (1.0 + 1e-9) + 1e-12 * x.abs().max(y.abs())
        }
        _ => false,
    }
}

/// `None` when the rows agree, else what differs first.
fn difference(got: &[Vec<String>], want: &[Vec<String>]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} rows, expected {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let agree = g.len() == w.len() && g.iter().zip(w).all(|(a, b)| same_value(a, b));
        if !agree {
            return Some(format!("row {i}: {g:?}, expected {w:?}"));
        }
    }
    None
}

pub(crate) fn queries() -> Vec<(usize, String)> {
    (1..=22)
        .map(|n| {
            let path = tpch_dir().join(format!("q{n:02}.sql"));
            let sql = std::fs::read_to_string(&path).expect("query file");
            (n, sql.trim().trim_end_matches(';').to_owned())
        })
        .collect()
}

#[tokio::test]
async fn tpch_queries_match_each_source() {
    let schema_sql = std::fs::read_to_string(tpch_dir().join("schema.sql")).expect("schema.sql");
    let tables = generate();
    let db = Databases::create().await;
    load_databases(&db, &schema_sql, &tables).await;
    let lake_dir = std::env::temp_dir().join(format!("biproxy-it-tpch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&lake_dir);
    std::fs::create_dir_all(&lake_dir).expect("lake dir");
    write_lake(&lake_dir, &tables, &arrow_schemas(&schema_sql)).await;
    let text = format!(
        "{}\n{}\n[[source]]\nname = \"tpch_files\"\nkind = \"lake\"\npath = {:?}\n{}{}{}",
        demo_config_text(""),
        db.sources_toml("tpch_pg_src", "tpch_my_src", "pool_size = 4"),
        lake_dir.display().to_string(),
        workspace("tpch_lake", "tpch_files", &tables),
        workspace("tpch_pg", "tpch_pg_src", &tables),
        workspace("tpch_my", "tpch_my_src", &tables),
    );
    let config = config::parse(&text, "tpch.toml", Path::new(".")).expect("config");
    let server = TestServer::with_config(config).await;
    let direct_pg = db.pg().await;
    let mut direct_my = db.my().await;
    let mut report = Vec::new();
    let mut unexpected = Vec::new();
    for (label, workspace) in [
        ("lake", "tpch_lake"),
        ("postgres", "tpch_pg"),
        ("mysql", "tpch_my"),
    ] {
        let client = server
            .try_connect("carol", "carol", workspace)
            .await
            .expect("connect");
        let mut passed = 0;
        for (n, sql) in queries() {
            let want = if label == "mysql" {
                my_rows(&mut direct_my, &sql).await
            } else {
                pg_rows(&direct_pg, &sql)
                    .await
                    .unwrap_or_else(|e| panic!("Q{n} directly on PostgreSQL: {e}"))
            };
            assert!(
                !want.is_empty(),
                "Q{n} returns no rows at this scale; pick parameters that do"
            );
            let outcome = match pg_rows(&client, &sql).await {
                Ok(got) => difference(&got, &want),
                Err(e) => Some(e),
            };
            let known = KNOWN_DIFFERENCES
                .iter()
                .any(|(l, q, _)| *l == label && *q == n);
            match (outcome, known) {
                (None, false) => passed += 1,
                (Some(_), true) => {}
                (None, true) => unexpected.push(format!(
                    "{label} Q{n}: now matches; remove it from KNOWN_DIFFERENCES"
                )),
                (Some(why), false) => {
                    let plan = pg_rows(&client, &format!("EXPLAIN {sql}"))
                        .await
                        .unwrap_or_default();
                    let sent: Vec<String> = plan
                        .iter()
                        .filter(|r| r[0] == "physical_plan")
                        .flat_map(|r| r[1].lines().map(str::to_owned).collect::<Vec<_>>())
                        .filter(|l| l.contains("sql="))
                        .collect();
                    unexpected.push(format!(
                        "{label} Q{n}: {why}\n  sent: {}",
                        sent.join("\n  sent: ")
                    ));
                }
            }
        }
        report.push(format!("{label}: {passed}/22 match"));
    }
    eprintln!("TPC-H SF {SCALE_FACTOR}: {}", report.join(", "));
    let _ = std::fs::remove_dir_all(&lake_dir);
    direct_my.disconnect().await.ok();
    assert!(
        unexpected.is_empty(),
        "TPC-H ({}):\n{}",
        report.join(", "),
        unexpected.join("\n")
    );
    drop(db);
}
