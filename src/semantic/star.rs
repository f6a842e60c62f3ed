//! Star schemas: a fact table joined many-to-one to dimension tables, declared in the model
//! (`[[dataset.join]]`) rather than written as SQL.
//!
//! The joined table is a provider that builds its plan per scan from the columns the query
//! needs: a LEFT join to a dimension none of whose columns are used is left out (join
//! pruning). That is exact because the join is many-to-one: each fact row matches at most
//! one dimension row, and a LEFT join keeps every fact row, so without the dimension's
//! columns the join changes nothing. INNER joins can drop fact rows, so they always run.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::datasource::{provider_as_source, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlanBuilder, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::config::{ConfigError, DatasetConfig};
use crate::source::Source;
use std::collections::HashMap;

/// One dimension joined to the fact table.
#[derive(Debug, Clone)]
pub struct StarJoin {
    /// Table name (also its qualifier inside the plan).
    pub table: String,
    /// The dimension table.
    pub provider: Arc<dyn TableProvider>,
    /// Key column on the fact side.
    pub fact_key: String,
    /// Key column on the dimension side.
    pub dim_key: String,
    /// INNER (always joined) rather than LEFT (pruned when unused).
    pub inner: bool,
}

/// Where an output column comes from.
#[derive(Debug, Clone)]
struct Output {
    /// `None` = the fact table, `Some(i)` = `joins[i]`.
    side: Option<usize>,
    /// Column name in its table (and in the dataset).
    name: String,
}

/// A fact table with its dimensions, joined on demand.
#[derive(Debug)]
pub struct StarTable {
    fact_table: String,
    fact: Arc<dyn TableProvider>,
    joins: Vec<StarJoin>,
    outputs: Vec<Output>,
    schema: SchemaRef,
}

impl StarTable {
    /// Assemble from the fact table, its joins and, per join, the dimension columns to show.
    ///
    /// # Errors
    /// A column name that two tables would both contribute (name the columns to resolve it).
    pub fn new(
        fact_table: &str,
        fact: Arc<dyn TableProvider>,
        joins: Vec<(StarJoin, Vec<String>)>,
    ) -> Result<StarTable, String> {
        let mut fields: Vec<Field> = Vec::new();
        let mut outputs = Vec::new();
        for f in fact.schema().fields() {
            fields.push(f.as_ref().clone());
            outputs.push(Output {
                side: None,
                name: f.name().clone(),
            });
        }
        let mut plain = Vec::new();
        for (i, (join, columns)) in joins.into_iter().enumerate() {
            let schema = join.provider.schema();
            for c in columns {
                let field = schema
                    .field_with_name(&c)
                    .map_err(|_| format!("table \"{}\" has no column \"{c}\"", join.table))?;
                if fields.iter().any(|f| f.name() == &c) {
                    return Err(format!(
                        "column \"{c}\" of \"{}\" is already a column of the dataset; list the `columns` to take from \"{}\"",
                        join.table, join.table
                    ));
                }
                // A LEFT join can leave a dimension column empty.
                fields.push(
                    field
                        .clone()
                        .with_nullable(field.is_nullable() || !join.inner),
                );
                outputs.push(Output {
                    side: Some(i),
                    name: c,
                });
            }
            plain.push(join);
        }
        Ok(StarTable {
            fact_table: fact_table.to_owned(),
            fact,
            joins: plain,
            outputs,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    fn qualified(&self, o: &Output) -> Expr {
        let table = o
            .side
            .map_or(self.fact_table.as_str(), |i| self.joins[i].table.as_str());
        Expr::Column(Column::new(Some(table), &o.name))
    }

    /// Columns of the dataset that the scan must produce or filter on.
    fn needed(&self, projection: Option<&Vec<usize>>, filters: &[Expr]) -> HashSet<usize> {
        let mut needed: HashSet<usize> = match projection {
            Some(p) => p.iter().copied().collect(),
            None => (0..self.outputs.len()).collect(),
        };
        for f in filters {
            for c in f.column_refs() {
                if let Some(i) = self.outputs.iter().position(|o| o.name == c.name) {
                    needed.insert(i);
                }
            }
        }
        needed
    }

    /// The join indexes a scan needs: INNER joins always, LEFT joins only when one of their
    /// columns is needed.
    pub fn joins_needed(&self, projection: Option<&Vec<usize>>, filters: &[Expr]) -> Vec<usize> {
        let needed = self.needed(projection, filters);
        (0..self.joins.len())
            .filter(|j| {
                self.joins[*j].inner || needed.iter().any(|i| self.outputs[*i].side == Some(*j))
            })
            .collect()
    }

    /// Rebind a filter written against the dataset's columns to the joined tables.
    fn rebind(&self, filter: &Expr) -> DfResult<Expr> {
        filter
            .clone()
            .transform(|e| match &e {
                Expr::Column(c) => match self.outputs.iter().find(|o| o.name == c.name) {
                    Some(o) => Ok(Transformed::yes(self.qualified(o))),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })
            .map(|t| t.data)
    }
}

#[async_trait]
impl TableProvider for StarTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Applied inside the joined plan (so they reach the Parquet scans), and again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("star scan outside a SessionState".into()))?;
        let mut plan = LogicalPlanBuilder::scan(
            self.fact_table.as_str(),
            provider_as_source(Arc::clone(&self.fact)),
            None,
        )?;
        for j in self.joins_needed(projection, filters) {
            let join = &self.joins[j];
            let dim = LogicalPlanBuilder::scan(
                join.table.as_str(),
                provider_as_source(Arc::clone(&join.provider)),
                None,
            )?
            .build()?;
            plan = plan.join(
                dim,
                if join.inner {
                    JoinType::Inner
                } else {
                    JoinType::Left
                },
                (
                    vec![Column::new(Some(self.fact_table.as_str()), &join.fact_key)],
                    vec![Column::new(Some(join.table.as_str()), &join.dim_key)],
                ),
                None,
            )?;
        }
        let rebound = filters
            .iter()
            .map(|f| self.rebind(f))
            .collect::<DfResult<Vec<_>>>()?;
        if let Some(predicate) = conjunction(rebound) {
            plan = plan.filter(predicate)?;
        }
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.outputs.len()).collect(),
        };
        plan = plan.project(columns.iter().map(|i| {
            let o = &self.outputs[*i];
            self.qualified(o).alias(&o.name)
        }))?;
        if filters.is_empty() {
            if let Some(n) = limit {
                plan = plan.limit(0, Some(n))?;
            }
        }
        state.create_physical_plan(&plan.build()?).await
    }
}

/// Build the star table of a dataset whose `table` has `[[dataset.join]]`s and register it
/// in the lake under a private name, returned for the dataset's SQL.
///
/// # Errors
/// A missing table or key, keys of different types, or column names that collide; each
/// located at the join's `table` line.
pub async fn register(
    d: &DatasetConfig,
    fact_table: &str,
    sources: &HashMap<String, Source>,
) -> Result<String, ConfigError> {
    let lake = &sources[&d.source];
    let fact = lake.provider(fact_table).await.ok_or_else(|| {
        ConfigError::at(
            &d.origin,
            format!("dataset \"{}\".table", d.name),
            format!("no table \"{fact_table}\""),
        )
    })?;
    let mut joins = Vec::new();
    for j in &d.joins {
        let err = |m: String| {
            ConfigError::at(
                &j.origin,
                format!("dataset \"{}\".join \"{}\"", d.name, j.table),
                m,
            )
        };
        let dim_source_name = j.source.as_deref().unwrap_or(&d.source);
        let dim_source = sources
            .get(dim_source_name)
            .ok_or_else(|| err(format!("source \"{dim_source_name}\" is not available")))?;
        let dim = dim_source.provider(&j.table).await.ok_or_else(|| {
            err(format!(
                "source \"{dim_source_name}\" has no table \"{}\"; it has: {}",
                j.table,
                dim_source.tables().join(", ")
            ))
        })?;
        let fact_key = fact
            .schema()
            .field_with_name(&j.key)
            .map(|f| f.data_type().clone())
            .map_err(|_| err(format!("\"{fact_table}\" has no key column \"{}\"", j.key)))?;
        let dim_key = dim
            .schema()
            .field_with_name(&j.dimension_key)
            .map(|f| f.data_type().clone())
            .map_err(|_| {
                err(format!(
                    "\"{}\" has no key column \"{}\"",
                    j.table, j.dimension_key
                ))
            })?;
        if fact_key != dim_key {
            return Err(err(format!(
                "join keys have incompatible types: {fact_table}.{} is {fact_key}, {}.{} is {dim_key}",
                j.key, j.table, j.dimension_key
            )));
        }
        let columns = j.columns.clone().unwrap_or_else(|| {
            dim.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| n != &j.dimension_key)
                .collect()
        });
        let join = StarJoin {
            table: j.table.clone(),
            provider: dim,
            fact_key: j.key.clone(),
            dim_key: j.dimension_key.clone(),
            inner: j.inner,
        };
        joins.push((join, columns));
    }
    let star = StarTable::new(fact_table, fact, joins)
        .map_err(|m| ConfigError::at(&d.origin, format!("dataset \"{}\".join", d.name), m))?;
    let name = format!("__dataset_{}", d.name.to_lowercase());
    lake.register(&name, Arc::new(star)).map_err(|e| {
        ConfigError::at(&d.origin, format!("dataset \"{}\"", d.name), e.to_string())
    })?;
    Ok(name)
}
