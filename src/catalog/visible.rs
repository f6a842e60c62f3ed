//! What the catalogs show one session: `pg_catalog` and the `biproxy` model schema list
//! only the datasets and columns the session may query. (`information_schema` needs
//! nothing here: DataFusion builds it from the session's own `public` schema.)
//!
//! The catalog tables are built once per workspace, so object ids stay the same for
//! every session and comments keyed by them stay right. A session sees them through
//! [`Visible`], which turns a table listing datasets into a view without the rows of
//! what is hidden from this session. What is hidden is found by comparing the shared
//! datasets with the session's view of them, so this module repeats no access rule.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::Result as DfResult;
use datafusion::prelude::SessionContext;

use super::DATASET_SCHEMA;

/// Which catalog a [`Visible`] wraps; each knows how its tables name datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `pg_catalog`: rows name datasets by object id.
    PgCatalog,
    /// `biproxy`: rows name datasets in a `dataset` column.
    Model,
}

/// A catalog schema as one session may see it.
#[derive(Debug)]
pub struct Visible {
    kind: Kind,
    inner: Arc<dyn SchemaProvider>,
    shared: Arc<dyn SchemaProvider>,
    session: Arc<dyn SchemaProvider>,
}

impl Visible {
    /// `inner` (the workspace's catalog schema) filtered to what `session` shows of
    /// `shared` (the workspace's datasets).
    pub fn new(
        kind: Kind,
        inner: Arc<dyn SchemaProvider>,
        shared: Arc<dyn SchemaProvider>,
        session: Arc<dyn SchemaProvider>,
    ) -> Visible {
        Visible {
            kind,
            inner,
            shared,
            session,
        }
    }

    /// Datasets, and columns of visible datasets, that the session does not have.
    async fn hidden(&self) -> DfResult<Hidden> {
        let mut hidden = Hidden::default();
        for name in self.shared.table_names() {
            let Some(full) = self.shared.table(&name).await? else {
                continue;
            };
            match self.session.table(&name).await? {
                None => hidden.datasets.push(name),
                Some(own) => {
                    let own = own.schema();
                    let missing: Vec<(usize, String)> = full
                        .schema()
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| own.field_with_name(f.name()).is_err())
                        .map(|(i, f)| (i + 1, f.name().clone()))
                        .collect();
                    if !missing.is_empty() {
                        hidden.columns.push((name, missing));
                    }
                }
            }
        }
        Ok(hidden)
    }

    /// The filter that keeps what the session may see of catalog table `table`, if that
    /// table lists datasets or columns.
    async fn filter(&self, table: &str, hidden: &Hidden) -> DfResult<Option<String>> {
        Ok(match (self.kind, table) {
            (Kind::Model, "datasets") => Some(hidden.datasets_filter("dataset")),
            (Kind::Model, "columns") => Some(hidden.filter("dataset", "column_name")),
            (Kind::Model, "dimensions") => Some(hidden.filter("dataset", "dimension")),
            (Kind::Model, "hierarchies") => Some(hidden.filter("dataset", "level")),
            (Kind::Model, "measures") => {
                Some(self.measures(hidden).await?.filter("dataset", "measure"))
            }
            (Kind::PgCatalog, "pg_tables") => Some(format!(
                "NOT (schemaname = '{DATASET_SCHEMA}' AND NOT {})",
                hidden.datasets_filter("tablename")
            )),
            (Kind::PgCatalog, "pg_class" | "pg_attribute" | "pg_description") => {
                let oids = self.oids().await?;
                let by_oid = hidden.by_oid(&oids);
                Some(match table {
                    "pg_class" => by_oid.tables("oid"),
                    "pg_attribute" => by_oid.filter("attrelid", "attnum"),
                    _ => by_oid.filter("objoid", "objsubid"),
                })
            }
            _ => None,
        })
    }

    /// The measures the session cannot use: those of hidden datasets, those over a hidden
    /// column, and derived measures that use one of these (as `Hidden` columns, by name).
    async fn measures(&self, hidden: &Hidden) -> DfResult<Hidden> {
        let rows = self
            .rows(
                &["measures"],
                "SELECT dataset, measure, column_name, definition FROM measures",
            )
            .await?;
        let mut unusable: Vec<(String, String)> = rows
            .iter()
            .filter(|r| {
                hidden.datasets.contains(&r[0])
                    || hidden
                        .columns
                        .iter()
                        .any(|(d, cs)| *d == r[0] && cs.iter().any(|(_, c)| *c == r[2]))
            })
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        // Derived measures name others as MEASURE(name): follow them until nothing changes.
        loop {
            let uses = |r: &Vec<String>, (d, m): &(String, String)| {
                *d == r[0]
                    && r[3]
                        .to_ascii_lowercase()
                        .replace(' ', "")
                        .contains(&format!("measure({})", m.to_ascii_lowercase()))
            };
            let more: Vec<(String, String)> = rows
                .iter()
                .filter(|r| !unusable.iter().any(|(d, m)| *d == r[0] && *m == r[1]))
                .filter(|r| unusable.iter().any(|u| uses(r, u)))
                .map(|r| (r[0].clone(), r[1].clone()))
                .collect();
            if more.is_empty() {
                break;
            }
            unusable.extend(more);
        }
        let mut out = Hidden {
            datasets: hidden.datasets.clone(),
            columns: Vec::new(),
        };
        for (dataset, measure) in unusable {
            match out.columns.iter_mut().find(|(d, _)| *d == dataset) {
                Some((_, ms)) => ms.push((0, measure)),
                None => out.columns.push((dataset, vec![(0, measure)])),
            }
        }
        Ok(out)
    }

    /// The rows `sql` reads from tables of the wrapped schema, as text.
    async fn rows(&self, tables: &[&str], sql: &str) -> DfResult<Vec<Vec<String>>> {
        let ctx = SessionContext::new();
        for name in tables {
            if let Some(t) = self.inner.table(name).await? {
                ctx.register_table(*name, t)?;
            }
        }
        let mut out = Vec::new();
        for batch in ctx.sql(sql).await?.collect().await? {
            let columns = batch
                .columns()
                .iter()
                .map(|c| cast(c, &DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()?;
            for i in 0..batch.num_rows() {
                out.push(
                    columns
                        .iter()
                        .map(|c| {
                            c.as_any()
                                .downcast_ref::<StringArray>()
                                .map(|a| a.value(i).to_owned())
                                .unwrap_or_default()
                        })
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    /// Object ids of the datasets, from the workspace's own `pg_class`.
    async fn oids(&self) -> DfResult<HashMap<String, i64>> {
        let rows = self
            .rows(
                &["pg_class", "pg_namespace"],
                &format!(
                    "SELECT c.relname, c.oid FROM pg_class c JOIN pg_namespace n \
                     ON c.relnamespace = n.oid WHERE n.nspname = '{DATASET_SCHEMA}'"
                ),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r[0].clone(), r[1].parse().ok()?)))
            .collect())
    }
}

#[async_trait]
impl SchemaProvider for Visible {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let hidden = self.hidden().await?;
        if hidden.is_empty() {
            return Ok(Some(table));
        }
        match self.filter(name, &hidden).await? {
            Some(filter) => view(table, &filter).await.map(Some),
            None => Ok(Some(table)),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `table` seen through `filter`: a view, so the filter runs below whatever the query
/// does with the catalog table.
async fn view(table: Arc<dyn TableProvider>, filter: &str) -> DfResult<Arc<dyn TableProvider>> {
    let ctx = SessionContext::new();
    ctx.register_table("t", table)?;
    let plan = ctx
        .sql(&format!("SELECT * FROM t WHERE {filter}"))
        .await?
        .into_unoptimized_plan();
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// What one session does not see.
#[derive(Debug, Default)]
struct Hidden {
    datasets: Vec<String>,
    /// Per visible dataset, its hidden columns with their 1-based positions.
    columns: Vec<(String, Vec<(usize, String)>)>,
}

impl Hidden {
    fn is_empty(&self) -> bool {
        self.datasets.is_empty() && self.columns.is_empty()
    }

    /// True for rows whose `dataset` column names a visible dataset.
    fn datasets_filter(&self, dataset: &str) -> String {
        if self.datasets.is_empty() {
            return "TRUE".into();
        }
        format!("{dataset} NOT IN ({})", list(&self.datasets))
    }

    /// True for rows naming a visible dataset and none of its hidden columns.
    fn filter(&self, dataset: &str, column: &str) -> String {
        let mut parts = vec![self.datasets_filter(dataset)];
        for (table, columns) in &self.columns {
            let names: Vec<String> = columns.iter().map(|(_, c)| c.clone()).collect();
            parts.push(format!(
                "NOT ({dataset} = {} AND {column} IN ({}))",
                quote(table),
                list(&names)
            ));
        }
        parts.join(" AND ")
    }

    /// The same, by object id and column number.
    fn by_oid(&self, oids: &HashMap<String, i64>) -> ByOid {
        ByOid {
            tables: self
                .datasets
                .iter()
                .filter_map(|d| oids.get(d).copied())
                .collect(),
            columns: self
                .columns
                .iter()
                .filter_map(|(t, cs)| Some((*oids.get(t)?, cs.iter().map(|(n, _)| *n).collect())))
                .collect(),
        }
    }
}

/// [`Hidden`] in `pg_catalog`'s terms.
struct ByOid {
    tables: Vec<i64>,
    columns: Vec<(i64, Vec<usize>)>,
}

impl ByOid {
    fn tables(&self, oid: &str) -> String {
        if self.tables.is_empty() {
            return "TRUE".into();
        }
        let oids: Vec<String> = self.tables.iter().map(ToString::to_string).collect();
        format!("CAST({oid} AS BIGINT) NOT IN ({})", oids.join(", "))
    }

    fn filter(&self, oid: &str, number: &str) -> String {
        let mut parts = vec![self.tables(oid)];
        for (table, numbers) in &self.columns {
            let numbers: Vec<String> = numbers.iter().map(ToString::to_string).collect();
            parts.push(format!(
                "NOT (CAST({oid} AS BIGINT) = {table} AND {number} IN ({}))",
                numbers.join(", ")
            ));
        }
        parts.join(" AND ")
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ")
}
