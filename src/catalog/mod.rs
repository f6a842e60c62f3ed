//! What clients see when they browse: `pg_catalog`, `information_schema`, and the
//! PostgreSQL functions drivers call on connect (`version()`, `current_setting()`,
//! `current_user`, ...).
//!
//! A workspace's catalog is built once, as a template DataFusion state holding only its
//! datasets; each session starts from a cheap clone of it and adds the functions that
//! depend on who is connected. Invariant: the template never holds a source's raw tables;
//! only a developer's or admin's session adds them, one schema per source.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    SchemaProvider, TableProvider,
};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::setup_pg_catalog;

use crate::session::settings::{Settings, SERVER_VERSION};

pub mod datasets;
pub mod description;
pub mod visible;

/// The schema that holds a workspace's datasets.
pub const DATASET_SCHEMA: &str = "public";

/// The schema that describes the model in SQL (datasets, columns, measures).
pub const MODEL_SCHEMA: &str = "biproxy";

/// Build the template state of one workspace: its datasets in `public`, plus
/// `pg_catalog`, `information_schema` and the session-independent functions.
///
/// # Errors
/// A DataFusion error if a catalog table cannot be built (a bug, not user input).
pub fn workspace_state(
    workspace: &str,
    datasets: &[(String, Arc<dyn TableProvider>)],
    public: Arc<datasets::DatasetSchema>,
    model: Arc<dyn SchemaProvider>,
) -> DfResult<SessionState> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(workspace, DATASET_SCHEMA)
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true);
    let mut rules = datafusion::optimizer::Optimizer::new().rules;
    // Rollups first: later rules reshape aggregates (count(DISTINCT) into two) past
    // recognition.
    rules.insert(0, Arc::new(crate::accel::rollup::UseRollups));
    rules.push(Arc::new(crate::semantic::star::ExpandStars));
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(crate::plan::pushdown::PushdownPlanner::default()))
        .build();
    let ctx = SessionContext::new_with_state(state);
    if let Some(catalog) = ctx.catalog(workspace) {
        catalog.register_schema(DATASET_SCHEMA, public)?;
    }
    for (name, provider) in datasets {
        ctx.register_table(name.as_str(), Arc::clone(provider))?;
    }
    if let Some(catalog) = ctx.catalog(workspace) {
        catalog.register_schema(MODEL_SCHEMA, model)?;
    }
    setup_pg_catalog(&ctx, workspace, EmptyContextProvider).map_err(|e| *e)?;
    ctx.register_udf(version_udf());
    ctx.register_udf(no_description_udf("shobj_description", 2));
    ctx.register_udf(pg_size_pretty_udf());
    ctx.register_udf(unknown_size_udf("pg_table_size"));
    Ok(ctx.state())
}

/// A batch of text columns: how biproxy answers catalog-like questions it computes itself
/// (`SHOW ALL`, the `biproxy` model schema).
///
/// # Errors
/// Only if a row is shorter than `columns` (a bug).
pub fn text_batch<S: AsRef<str>>(columns: &[S], rows: &[Vec<String>]) -> DfResult<RecordBatch> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.as_ref(), DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays = (0..columns.len())
        .map(|i| {
            let values = rows.iter().map(|r| r.get(i).map_or("", String::as_str));
            Arc::new(StringArray::from_iter_values(values)) as ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// A session's context: the workspace template with the session's own `public` schema
/// (the datasets this user may see, under their row policies) and, for developers, a
/// schema of raw tables per source, plus functions that answer for this user and these
/// settings.
pub fn session_context(
    template: &SessionState,
    user: &str,
    settings: Arc<Mutex<Settings>>,
    public: &Arc<dyn SchemaProvider>,
    raw: &[(String, Arc<dyn SchemaProvider>)],
) -> SessionContext {
    let state = SessionStateBuilder::new_from_existing(template.clone())
        .with_catalog_list(session_catalogs(template, public, raw))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_udf(constant_text_udf("session_user", user));
    ctx.register_udf(current_setting_udf(settings));
    ctx
}

/// The template's catalogs with the workspace's `public` schema replaced by the session's
/// own, and `pg_catalog` and the model schema showing only what it holds (the others are
/// shared).
fn session_catalogs(
    template: &SessionState,
    public: &Arc<dyn SchemaProvider>,
    raw: &[(String, Arc<dyn SchemaProvider>)],
) -> Arc<dyn CatalogProviderList> {
    let shared = template.catalog_list();
    let list = MemoryCatalogProviderList::new();
    let workspace = template.config().options().catalog.default_catalog.clone();
    for name in shared.catalog_names() {
        let Some(catalog) = shared.catalog(&name) else {
            continue;
        };
        if name != workspace {
            list.register_catalog(name, catalog);
            continue;
        }
        let own = MemoryCatalogProvider::new();
        let shared_public = catalog.schema(DATASET_SCHEMA);
        for schema in catalog.schema_names() {
            let kind = match schema.as_str() {
                "pg_catalog" => Some(visible::Kind::PgCatalog),
                MODEL_SCHEMA => Some(visible::Kind::Model),
                _ => None,
            };
            let provider = match (schema.as_str(), kind, &shared_public) {
                (DATASET_SCHEMA, _, _) => Some(Arc::clone(public)),
                (_, Some(kind), Some(shared)) => catalog.schema(&schema).map(|inner| {
                    Arc::new(visible::Visible::new(
                        kind,
                        inner,
                        Arc::clone(shared),
                        Arc::clone(public),
                    )) as Arc<dyn SchemaProvider>
                }),
                _ => catalog.schema(&schema),
            };
            if let Some(provider) = provider {
                // A memory catalog accepts every schema.
                let _ = own.register_schema(&schema, provider);
            }
        }
        for (source, tables) in raw {
            // A source named like a catalog schema stays hidden rather than shadow it.
            if own.schema(source).is_none() {
                let _ = own.register_schema(source, Arc::clone(tables));
            }
        }
        list.register_catalog(name, Arc::new(own));
    }
    Arc::new(list)
}

/// `version()`: the PostgreSQL-shaped string SQLAlchemy and JDBC parse.
fn version_udf() -> ScalarUDF {
    let text =
        format!("PostgreSQL {SERVER_VERSION} on x86_64-pc-linux-gnu, compiled by rustc, 64-bit");
    constant_text_udf("version", &text)
}

fn constant_text_udf(name: &str, value: &str) -> ScalarUDF {
    let value = value.to_owned();
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                value.clone(),
            ))))
        }),
    )
}

/// `shobj_description()`: shared objects (databases, roles) carry no comments, which
/// PostgreSQL reports as NULL; psql `\l+` calls it. Dataset comments: [`description`].
fn no_description_udf(name: &str, args: usize) -> ScalarUDF {
    let signature = datafusion::logical_expr::Signature::any(args, Volatility::Stable);
    let udf = datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
        name,
        signature,
        DataType::Utf8,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    );
    ScalarUDF::from(udf)
}

/// `pg_size_pretty(bigint)`, PostgreSQL's rounding and units (psql `\dt+`, `\l+`).
fn pg_size_pretty_udf() -> ScalarUDF {
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = args[0].clone().into_array(1)?;
            let sizes = sizes
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .ok_or_else(|| DataFusionError::Internal("pg_size_pretty takes bigint".into()))?;
            let text: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(text)))
        }),
    )
}

/// PostgreSQL's `pg_size_pretty`: bytes below 10 kB, then kB, MB, GB, TB, half-rounded.
fn size_pretty(size: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if size.abs() < LIMIT {
        return format!("{size} bytes");
    }
    let mut size = size >> 9;
    for unit in ["kB", "MB", "GB"] {
        if size.abs() < LIMIT2 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} TB", half_rounded(size))
}

/// Sizes of datasets are not known (their data lives in the sources): NULL, as PostgreSQL
/// answers for an object without storage.
fn unknown_size_udf(name: &str) -> ScalarUDF {
    let udf = datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
        name,
        datafusion::logical_expr::Signature::any(1, Volatility::Stable),
        DataType::Int64,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)))),
    );
    ScalarUDF::from(udf)
}

/// `current_setting(name)`: reads the session's settings at execution time.
fn current_setting_udf(settings: Arc<Mutex<Settings>>) -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let name = match args.first() {
                Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(n)))) => n.clone(),
                Some(ColumnarValue::Array(a)) if !a.is_empty() => {
                    ScalarValue::try_from_array(a, 0)?.to_string()
                }
                _ => {
                    return Err(DataFusionError::Plan(
                        "current_setting() needs a parameter name".into(),
                    ))
                }
            };
            let value = settings
                .lock()
                .map_err(|_| DataFusionError::Internal("settings lock poisoned".into()))?
                .get(&name)
                .map_err(|e| DataFusionError::Plan(e.to_string()))?;
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value))))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn size_pretty_matches_postgres() {
        // Values from PostgreSQL 15's pg_size_pretty.
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
        assert_eq!(size_pretty(10_737_418_240), "10 GB");
    }
}
