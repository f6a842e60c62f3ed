//! Comments on datasets and their columns, where PostgreSQL clients look for them:
//! `pg_description` (pgJDBC `REMARKS`, DBeaver), `col_description()` and
//! `obj_description()` (psql `\d+`, `\dt+`).
//!
//! Object ids come from the shared `pg_catalog` provider, which assigns them once per
//! workspace; they are read back at build time and the comments keyed by them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

use super::DATASET_SCHEMA;

/// A table's comment and its columns' comments (by position, empty = none).
#[derive(Debug, Clone)]
pub struct TableDoc {
    /// Table name in the dataset schema.
    pub name: String,
    /// The table's comment.
    pub description: String,
    /// Column comments, in column order.
    pub columns: Vec<String>,
}

/// Comments by (object id, column number; 0 = the table itself).
type Comments = HashMap<(i64, i64), String>;

/// Add the comments to a workspace's template state.
///
/// # Errors
/// A DataFusion error if the catalog cannot be read (a bug).
pub async fn install(
    state: SessionState,
    workspace: &str,
    docs: &[TableDoc],
) -> DfResult<SessionState> {
    let ctx = SessionContext::new_with_state(state);
    let comments = comments(&ctx, docs).await?;
    if let Some(catalog) = ctx.catalog(workspace) {
        if let Some(inner) = catalog.schema("pg_catalog") {
            let table = description_table(&ctx, &comments).await?;
            catalog.register_schema("pg_catalog", Arc::new(Described { inner, table }))?;
        }
    }
    let comments = Arc::new(comments);
    ctx.register_udf(lookup_udf("col_description", Arc::clone(&comments), true));
    ctx.register_udf(lookup_udf("obj_description", comments, false));
    Ok(ctx.state())
}

async fn comments(ctx: &SessionContext, docs: &[TableDoc]) -> DfResult<Comments> {
    let sql = format!(
        "SELECT CAST(c.oid AS BIGINT), c.relname FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid WHERE n.nspname = '{DATASET_SCHEMA}'"
    );
    let mut out = Comments::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let oids = cast(batch.column(0), &DataType::Int64)?;
        let oids = oids
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| internal("oid"))?;
        let names = cast(batch.column(1), &DataType::Utf8)?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| internal("relname"))?;
        for row in 0..batch.num_rows() {
            let Some(doc) = docs.iter().find(|d| d.name == names.value(row)) else {
                continue;
            };
            let oid = oids.value(row);
            if !doc.description.is_empty() {
                out.insert((oid, 0), doc.description.clone());
            }
            for (i, c) in doc
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.is_empty())
            {
                out.insert((oid, i as i64 + 1), c.clone());
            }
        }
    }
    Ok(out)
}

fn internal(what: &str) -> DataFusionError {
    DataFusionError::Internal(format!("pg_class.{what} has an unexpected type"))
}

/// `pg_description` with the built-in rows plus ours (class `pg_class`).
async fn description_table(
    ctx: &SessionContext,
    comments: &Comments,
) -> DfResult<Arc<dyn TableProvider>> {
    let existing = ctx.table("pg_catalog.pg_description").await?;
    let schema = Arc::new(existing.schema().as_arrow().clone());
    let mut batches = existing.collect().await?;
    let pg_class = ctx
        .sql("SELECT CAST(oid AS BIGINT) FROM pg_catalog.pg_class WHERE relname = 'pg_class'")
        .await?
        .collect()
        .await?
        .first()
        .and_then(|b| cast(b.column(0), &DataType::Int64).ok())
        .and_then(|a| {
            a.as_any()
                .downcast_ref::<Int64Array>()
                .filter(|a| !a.is_empty())
                .map(|a| a.value(0))
        })
        .unwrap_or(1259);
    let mut entries: Vec<(&(i64, i64), &String)> = comments.iter().collect();
    entries.sort();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|((oid, _), _)| *oid),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|_| pg_class),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|((_, sub), _)| *sub),
        )),
        Arc::new(StringArray::from_iter_values(
            entries.iter().map(|(_, d)| d.as_str()),
        )),
    ];
    let typed = columns
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    batches.push(RecordBatch::try_new(Arc::clone(&schema), typed)?);
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// `col_description(oid, attnum)` or `obj_description(oid, catalog)`.
fn lookup_udf(name: &str, comments: Arc<Comments>, by_column: bool) -> ScalarUDF {
    let udf = SimpleScalarUDF::new_with_signature(
        name,
        Signature::any(2, Volatility::Stable),
        DataType::Utf8,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let oids = integers(&args[0], rows)?;
            let subs = if by_column {
                integers(&args[1], rows)?
            } else {
                vec![Some(0); rows]
            };
            let values: StringArray = oids
                .iter()
                .zip(&subs)
                .map(|(o, s)| Some(comments.get(&((*o)?, (*s)?))?.as_str()))
                .collect();
            Ok(
                if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&values, 0)?)
                } else {
                    ColumnarValue::Array(Arc::new(values))
                },
            )
        }),
    );
    ScalarUDF::from(udf)
}

fn integers(arg: &ColumnarValue, rows: usize) -> DfResult<Vec<Option<i64>>> {
    let array = arg.clone().into_array(rows)?;
    let array = cast(&array, &DataType::Int64)?;
    let array = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("integer argument".into()))?;
    Ok(array.iter().collect())
}

/// `pg_catalog` with our `pg_description`.
#[derive(Debug)]
struct Described {
    inner: Arc<dyn SchemaProvider>,
    table: Arc<dyn TableProvider>,
}

#[async_trait]
impl SchemaProvider for Described {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case("pg_description") {
            return Ok(Some(Arc::clone(&self.table)));
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}
