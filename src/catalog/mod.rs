//! What clients see when they browse: `pg_catalog`, `information_schema`, and the
//! PostgreSQL functions drivers call on connect (`version()`, `current_setting()`,
//! `current_user`, ...).
//!
//! A workspace's catalog is built once, as a template DataFusion state holding only its
//! datasets; each session starts from a cheap clone of it and adds the functions that
//! depend on who is connected. Invariant: the template never holds a source's raw tables.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::setup_pg_catalog;

use crate::session::settings::{Settings, SERVER_VERSION};

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
    model: Arc<dyn SchemaProvider>,
) -> DfResult<SessionState> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(workspace, DATASET_SCHEMA)
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true);
    let ctx = SessionContext::new_with_config(config);
    for (name, provider) in datasets {
        ctx.register_table(name.as_str(), Arc::clone(provider))?;
    }
    if let Some(catalog) = ctx.catalog(workspace) {
        catalog.register_schema(MODEL_SCHEMA, model)?;
    }
    setup_pg_catalog(&ctx, workspace, EmptyContextProvider).map_err(|e| *e)?;
    ctx.register_udf(version_udf());
    for (name, args) in [
        ("col_description", 2),
        ("obj_description", 2),
        ("shobj_description", 2),
    ] {
        ctx.register_udf(no_description_udf(name, args));
    }
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

/// A session's context: the workspace template plus functions that answer for this user
/// and these settings.
pub fn session_context(
    template: &SessionState,
    user: &str,
    settings: Arc<Mutex<Settings>>,
) -> SessionContext {
    let ctx = SessionContext::new_with_state(template.clone());
    ctx.register_udf(constant_text_udf("session_user", user));
    ctx.register_udf(current_setting_udf(settings));
    ctx
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

/// `col_description()` and friends: datasets carry no comments yet, which PostgreSQL
/// reports as NULL. psql `\d+` and JDBC `getColumns` call these.
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
