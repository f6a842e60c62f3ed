//! The model described in SQL: the `biproxy` schema, so a tool or a person can discover
//! datasets, their columns and measures with a query. Its tables are views (`\dv biproxy.*`).

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::{provider_as_source, MemTable, ViewTable};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::LogicalPlanBuilder;

use super::Dataset;
use crate::config::MeasureDef;

/// Build the `biproxy` schema of a workspace: `datasets`, `columns`, `measures`.
///
/// # Errors
/// Only if a table cannot be assembled (a bug).
pub fn schema(datasets: &[Dataset]) -> DfResult<Arc<dyn SchemaProvider>> {
    let schema = MemorySchemaProvider::new();
    let dataset_rows: Vec<Vec<String>> = datasets
        .iter()
        .map(|d| vec![d.name.clone(), d.description.clone()])
        .collect();
    schema.register_table(
        "datasets".into(),
        text_table(&["dataset", "description"], &dataset_rows)?,
    )?;
    schema.register_table(
        "columns".into(),
        text_table(
            &[
                "dataset",
                "column_name",
                "data_type",
                "expression",
                "label",
                "description",
            ],
            &column_rows(datasets),
        )?,
    )?;
    schema.register_table(
        "measures".into(),
        text_table(
            &[
                "dataset",
                "measure",
                "aggregation",
                "column_name",
                "definition",
                "label",
                "description",
            ],
            &measure_rows(datasets),
        )?,
    )?;
    schema.register_table(
        "dimensions".into(),
        text_table(
            &[
                "dataset",
                "dimension",
                "type",
                "granularities",
                "geo_role",
                "label",
                "description",
            ],
            &dimension_rows(datasets),
        )?,
    )?;
    schema.register_table(
        "hierarchies".into(),
        text_table(
            &[
                "dataset",
                "hierarchy",
                "level",
                "position",
                "label",
                "description",
            ],
            &hierarchy_rows(datasets),
        )?,
    )?;
    Ok(Arc::new(schema))
}

fn dimension_rows(datasets: &[Dataset]) -> Vec<Vec<String>> {
    datasets
        .iter()
        .flat_map(|d| {
            d.dimensions.iter().map(|dim| {
                let (kind, granularities, role) = super::dimension::describe(dim, &d.fields);
                vec![
                    d.name.clone(),
                    dim.name.clone(),
                    kind.to_owned(),
                    granularities,
                    role.to_owned(),
                    dim.label.clone(),
                    dim.description.clone(),
                ]
            })
        })
        .collect()
}

fn hierarchy_rows(datasets: &[Dataset]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for d in datasets {
        for h in &d.hierarchies {
            for (i, level) in h.levels.iter().enumerate() {
                rows.push(vec![
                    d.name.clone(),
                    h.name.clone(),
                    level.clone(),
                    (i + 1).to_string(),
                    h.label.clone(),
                    h.description.clone(),
                ]);
            }
        }
    }
    rows
}

fn column_rows(datasets: &[Dataset]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for d in datasets {
        for f in d.table.schema().fields() {
            let doc = d.columns.iter().find(|c| &c.name == f.name());
            let field = d.fields.iter().find(|c| &c.name == f.name());
            rows.push(vec![
                d.name.clone(),
                f.name().clone(),
                arrow_pg::datatypes::into_pg_type(f.data_type())
                    .map_or_else(|_| f.data_type().to_string(), |t| t.name().to_owned()),
                field.map(|c| c.expr.clone()).unwrap_or_default(),
                doc.map(|c| &c.label)
                    .or(field.map(|c| &c.label))
                    .cloned()
                    .unwrap_or_default(),
                doc.map(|c| &c.description)
                    .or(field.map(|c| &c.description))
                    .cloned()
                    .unwrap_or_default(),
            ]);
        }
    }
    rows
}

fn measure_rows(datasets: &[Dataset]) -> Vec<Vec<String>> {
    datasets
        .iter()
        .flat_map(|d| {
            d.measures.iter().map(|m| {
                vec![
                    d.name.clone(),
                    m.name.clone(),
                    match &m.definition {
                        MeasureDef::Aggregate { agg, .. } => agg.name().to_owned(),
                        MeasureDef::Derived(_) => "derived".to_owned(),
                    },
                    match &m.definition {
                        MeasureDef::Aggregate { column, .. } => column.clone().unwrap_or_default(),
                        MeasureDef::Derived(_) => String::new(),
                    },
                    super::measure::measure_sql(m, None),
                    m.label.clone(),
                    m.description.clone(),
                ]
            })
        })
        .collect()
}

fn text_table(columns: &[&str], rows: &[Vec<String>]) -> DfResult<Arc<dyn TableProvider>> {
    let batch = crate::catalog::text_batch(columns, rows)?;
    let schema = batch.schema();
    let table = Arc::new(MemTable::try_new(schema, vec![vec![batch]])?);
    // Shown as views, like PostgreSQL's information_schema: `\dt` lists the datasets only.
    let plan = LogicalPlanBuilder::scan("model", provider_as_source(table), None)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}
