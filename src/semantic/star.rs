//! Star and snowflake schemas: a fact table joined many-to-one to dimension tables, and
//! dimensions to further dimensions, declared in the model (`[[dataset.join]]`) rather than
//! written as SQL.
//!
//! A dataset's joined table is a [`StarTable`]. [`ExpandStars`], an optimizer rule that runs
//! after projection and filter pushdown, replaces each scan of one by the joins that scan
//! needs: a LEFT join to a dimension none of whose columns are used (itself or through a
//! dimension joined from it) is left out — join pruning. That is exact because the join is
//! many-to-one: each fact row matches at most one dimension row, and a LEFT join keeps
//! every fact row, so without the dimension's columns the join changes nothing. INNER joins
//! can drop fact rows, so they always run. Expanding in the logical plan, rather than in
//! the scan, lets the rest of the query (aggregates, sorts, limits) be pushed to a database
//! source together with the joins as one statement.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, JoinType, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;

use crate::config::{ConfigError, DatasetConfig};
use crate::source::Source;

/// One dimension joined to the fact table or to an earlier dimension.
#[derive(Debug, Clone)]
pub struct StarJoin {
    /// Table name (also its qualifier inside the plan).
    pub table: String,
    /// The dimension table.
    pub provider: Arc<dyn TableProvider>,
    /// The table it joins from: `None` = the fact table, `Some(i)` = an earlier join.
    pub parent: Option<usize>,
    /// Key column on the parent's side.
    pub key: String,
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
    /// Assemble from the fact table, its joins (parents before children) and, per join,
    /// the dimension columns to show.
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
        let mut plain: Vec<StarJoin> = Vec::new();
        for (i, (join, columns)) in joins.into_iter().enumerate() {
            let schema = join.provider.schema();
            // A dimension reached only through LEFT joins can be empty.
            let optional = !join.inner || join.parent.is_some_and(|p| !always(&plain, p));
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
                fields.push(field.clone().with_nullable(field.is_nullable() || optional));
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

    fn table_of(&self, side: Option<usize>) -> &str {
        side.map_or(self.fact_table.as_str(), |i| self.joins[i].table.as_str())
    }

    fn qualified(&self, o: &Output) -> Expr {
        Expr::Column(Column::new(Some(self.table_of(o.side)), &o.name))
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

    /// The join indexes a scan needs, in declaration order: INNER joins always, LEFT joins
    /// when one of their columns is needed, and every join a needed one is joined from.
    pub fn joins_needed(&self, projection: Option<&Vec<usize>>, filters: &[Expr]) -> Vec<usize> {
        let needed = self.needed(projection, filters);
        let mut keep: Vec<bool> = (0..self.joins.len())
            .map(|j| self.joins[j].inner || needed.iter().any(|i| self.outputs[*i].side == Some(j)))
            .collect();
        // Children come after their parents, so one backward sweep reaches every ancestor.
        for j in (0..self.joins.len()).rev() {
            if keep[j] {
                if let Some(p) = self.joins[j].parent {
                    keep[p] = true;
                }
            }
        }
        (0..self.joins.len()).filter(|j| keep[*j]).collect()
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

    /// The joined plan for one scan: the needed joins, the scan's filters and its columns,
    /// qualified as `alias` so it can stand in for the scan.
    fn plan(
        &self,
        alias: &TableReference,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<LogicalPlan> {
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
                    vec![Column::new(Some(self.table_of(join.parent)), &join.key)],
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
            self.qualified(o)
                .alias_qualified(Some(alias.clone()), &o.name)
        }))?;
        if filters.is_empty() {
            if let Some(n) = limit {
                plan = plan.limit(0, Some(n))?;
            }
        }
        plan.build()
    }
}

/// Whether join `j` is INNER all the way up to the fact table.
fn always(joins: &[StarJoin], j: usize) -> bool {
    joins[j].inner && joins[j].parent.is_none_or(|p| always(joins, p))
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
        // Applied inside the joined plan (so they reach the sources), and again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    /// Only reached when [`ExpandStars`] did not run (a context without it): plans the same
    /// joins on their own.
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
        let plan = self.plan(
            &TableReference::bare(self.fact_table.as_str()),
            projection,
            filters,
            limit,
        )?;
        state.create_physical_plan(&plan).await
    }
}

/// The optimizer rule that replaces scans of a [`StarTable`] by their joins; see the
/// module documentation. Registered after DataFusion's own rules, so the scans it sees
/// already carry the query's columns and filters, and the next optimizer pass optimizes
/// the joins it produces.
#[derive(Debug, Default)]
pub struct ExpandStars;

impl OptimizerRule for ExpandStars {
    fn name(&self) -> &str {
        "biproxy_expand_stars"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::TableScan(scan) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Ok(provider) = source_as_provider(&scan.source) else {
            return Ok(Transformed::no(plan));
        };
        let Some(star) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<StarTable>()
        else {
            return Ok(Transformed::no(plan));
        };
        let expanded = star.plan(
            &scan.table_name,
            scan.projection.as_ref(),
            &scan.filters,
            scan.fetch,
        )?;
        Ok(Transformed::yes(expanded))
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
        let parent = j
            .from
            .as_ref()
            .map(|f| {
                joins
                    .iter()
                    .position(|(p, _): &(StarJoin, _)| &p.table == f)
            })
            .map(|p| {
                p.ok_or_else(|| {
                    err(format!(
                        "\"{}\" is not joined before this join",
                        j.from.as_deref().unwrap_or_default()
                    ))
                })
            })
            .transpose()?;
        let (parent_table, parent_schema) = match parent {
            None => (fact_table, fact.schema()),
            Some(p) => (joins[p].0.table.as_str(), joins[p].0.provider.schema()),
        };
        let key_type = parent_schema
            .field_with_name(&j.key)
            .map(|f| f.data_type().clone())
            .map_err(|_| {
                err(format!(
                    "\"{parent_table}\" has no key column \"{}\"",
                    j.key
                ))
            })?;
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
        if key_type != dim_key {
            return Err(err(format!(
                "join keys have incompatible types: {parent_table}.{} is {key_type}, {}.{} is {dim_key}",
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
            parent,
            key: j.key.clone(),
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
