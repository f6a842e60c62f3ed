//! Rollups (pre-aggregations): a dataset's copy grouped by some dimensions, with the
//! partial aggregates of some measures, and the optimizer rule that answers a query from
//! one when it gives exactly the rows the copy would.
//!
//! A rollup keeps, per group of its dimensions, `sum`, `count`, `min` and `max` of its
//! measures' columns, and `avg` and `count(DISTINCT)` as they are. Its table also holds
//! every time granularity column the dataset derives from a time granularity it groups by
//! (grouping by `order_date_day` also keeps `order_date_month`, ...): those are functions
//! of the day, so the groups are the same, and a query by month re-aggregates days.
//!
//! [`UseRollups`] rewrites an `Aggregate` whose input is only filters, projections and
//! aliases over a scan of an accelerated copy, when every column its groups and filters
//! read (row policies and masks included: they sit in that same input) is a column of
//! the rollup and every aggregate is one the rollup can give: `sum`, `min`, `max` and
//! `count` by re-aggregating (`count` as the sum of counts, 0 over no rows), `avg` and
//! `count(DISTINCT)` only when each group of the query is exactly one row of the rollup
//! (it groups by at least all the rollup's dimensions). Anything else reads the copy.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, Result as DfResult, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider, MemTable, TableType};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    cast, col, lit, Aggregate, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::config::{Aggregation, Granularity, MeasureConfig, MeasureDef, RollupConfig};

/// One aggregate a rollup keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    agg: Aggregation,
    /// `None`: count rows.
    column: Option<String>,
    /// Its column in the rollup table.
    alias: String,
}

/// A rollup as configured, resolved against the dataset.
#[derive(Debug, Clone)]
pub struct RollupDef {
    /// Name.
    pub name: String,
    dims: Vec<String>,
    /// `dims` plus the granularity columns they determine.
    columns: Vec<String>,
    parts: Vec<Part>,
}

impl RollupDef {
    /// Resolve `config` against the dataset's columns, measures and time granularity
    /// columns (`(dimension, granularity, column)`).
    ///
    /// # Errors
    /// A dimension or measure the dataset does not have, or a measure a rollup cannot
    /// hold; the message names it.
    pub fn resolve(
        config: &RollupConfig,
        schema: &SchemaRef,
        measures: &[MeasureConfig],
        granularities: &[(String, Granularity, String)],
    ) -> Result<RollupDef, String> {
        let mut columns = Vec::new();
        for d in &config.dimensions {
            if schema.field_with_name(d).is_err() {
                return Err(format!("dataset has no column \"{d}\" to group by"));
            }
            columns.push(d.clone());
        }
        for (dim, g, column) in granularities {
            let Some((_, fine, _)) = granularities
                .iter()
                .find(|(d2, _, c2)| d2 == dim && config.dimensions.contains(c2))
            else {
                continue;
            };
            if !columns.contains(column) && derivable(*g, *fine) {
                columns.push(column.clone());
            }
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut seen = HashSet::new();
        for m in &config.measures {
            for (agg, column) in aggregates_of(m, measures, &mut seen)? {
                if let Some(c) = column.as_deref() {
                    if schema.field_with_name(c).is_err() {
                        return Err(format!("measure \"{m}\" reads no column \"{c}\""));
                    }
                }
                if !parts.iter().any(|p| p.agg == agg && p.column == column) {
                    let alias = format!("__{}_{}", agg.name(), parts.len());
                    parts.push(Part { agg, column, alias });
                }
            }
        }
        Ok(RollupDef {
            name: config.name.clone(),
            dims: config.dimensions.clone(),
            columns,
            parts,
        })
    }
}

/// Whether a column truncated to `fine` determines its truncation to `coarse`.
fn derivable(coarse: Granularity, fine: Granularity) -> bool {
    use Granularity::{Day, Hour, Month, Quarter, Week, Year};
    match fine {
        Hour => coarse != Hour,
        Day => matches!(coarse, Week | Month | Quarter | Year),
        Month => matches!(coarse, Quarter | Year),
        Quarter => coarse == Year,
        Week | Year => false,
    }
}

/// The aggregates behind measure `name` (a derived measure's, recursively).
fn aggregates_of(
    name: &str,
    measures: &[MeasureConfig],
    seen: &mut HashSet<String>,
) -> Result<Vec<(Aggregation, Option<String>)>, String> {
    let m = measures
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("the dataset has no measure \"{name}\""))?;
    if !seen.insert(m.name.to_lowercase()) {
        return Ok(Vec::new());
    }
    match &m.definition {
        MeasureDef::Aggregate { agg, column } => Ok(vec![(*agg, column.clone())]),
        MeasureDef::Derived(expr) => {
            let mut out = Vec::new();
            let lower = expr.to_lowercase();
            let mut rest = lower.as_str();
            while let Some(at) = rest.find("measure(") {
                let after = &rest[at + "measure(".len()..];
                let end = after.find(')').unwrap_or(after.len());
                out.extend(aggregates_of(after[..end].trim(), measures, seen)?);
                rest = &after[end..];
            }
            Ok(out)
        }
    }
}

/// A rollup built from one copy.
#[derive(Debug, Clone)]
pub struct BuiltRollup {
    def: Arc<RollupDef>,
    table: Arc<MemTable>,
    /// The name its scans carry (shown by `EXPLAIN`).
    label: String,
    /// Arrow memory held.
    pub bytes: u64,
}

/// Group `extract` as `def` says.
///
/// # Errors
/// The engine's message.
pub async fn build(
    def: &RollupDef,
    dataset: &str,
    version: u64,
    extract: &Arc<MemTable>,
    state: &SessionState,
) -> Result<BuiltRollup, String> {
    let ctx = SessionContext::new_with_state(state.clone());
    let group: Vec<Expr> = def.columns.iter().map(|c| col(quoted(c))).collect();
    let aggs: Vec<Expr> = def
        .parts
        .iter()
        .map(|p| part_expr(p).alias(&p.alias))
        .collect();
    let df = ctx
        .read_table(Arc::clone(extract) as Arc<dyn TableProvider>)
        .and_then(|df| df.aggregate(group, aggs))
        .map_err(|e| e.to_string())?;
    let logical: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    let schema = batches.first().map_or(logical, |b| b.schema());
    let bytes = batches
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum();
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())?;
    Ok(BuiltRollup {
        def: Arc::new(def.clone()),
        table: Arc::new(table),
        label: format!("{dataset} rollup {} (v{version})", def.name),
        bytes,
    })
}

fn quoted(c: &str) -> Column {
    Column::new_unqualified(c)
}

/// The aggregate of `part` over the copy's rows.
fn part_expr(p: &Part) -> Expr {
    use datafusion::functions_aggregate::expr_fn::{avg, count, count_distinct, max, min, sum};
    let arg = || Expr::Column(quoted(p.column.as_deref().unwrap_or_default()));
    match (p.agg, p.column.as_ref()) {
        (Aggregation::Count, None) => count(lit(1)),
        (Aggregation::Count, Some(_)) => count(arg()),
        (Aggregation::CountDistinct, _) => count_distinct(arg()),
        (Aggregation::Sum, _) => sum(arg()),
        (Aggregation::Avg, _) => avg(arg()),
        (Aggregation::Min, _) => min(arg()),
        (Aggregation::Max, _) => max(arg()),
    }
}

/// An accelerated copy: its rows, and the rollups built from them. Scans read the rows;
/// [`UseRollups`] finds the rollups through the scan.
#[derive(Debug)]
pub struct Extract {
    /// The copy's rows.
    pub table: Arc<MemTable>,
    /// Rollups of this copy.
    pub rollups: Vec<BuiltRollup>,
}

#[async_trait]
impl TableProvider for Extract {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.table.scan(state, projection, filters, limit).await
    }
}

/// The optimizer rule that answers aggregates from rollups; see the module documentation.
#[derive(Debug, Default)]
pub struct UseRollups;

impl OptimizerRule for UseRollups {
    fn name(&self) -> &str {
        "use_rollups"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Aggregate(agg) => match answer(&agg)? {
                Some(p) => Ok(Transformed::yes(p)),
                None => Ok(Transformed::no(LogicalPlan::Aggregate(agg))),
            },
            other => Ok(Transformed::no(other)),
        })
    }
}

/// What an aggregate's input reads, in terms of the copy's own columns.
struct Base {
    extract: Arc<dyn TableProvider>,
    filters: Vec<Expr>,
    /// Each visible column of the input, as an expression over the copy's columns.
    columns: HashMap<Column, Expr>,
}

/// Follow `plan` through filters, projections and aliases down to a scan of a copy.
fn base_of(plan: &LogicalPlan) -> DfResult<Option<Base>> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let Ok(provider) = source_as_provider(&scan.source) else {
                return Ok(None);
            };
            if (provider.as_ref() as &dyn std::any::Any)
                .downcast_ref::<Extract>()
                .is_none()
                || !scan.filters.is_empty()
                || scan.fetch.is_some()
            {
                return Ok(None);
            }
            let columns = scan
                .projected_schema
                .columns()
                .into_iter()
                .map(|c| {
                    let base = Expr::Column(Column::new_unqualified(c.name.clone()));
                    (c, base)
                })
                .collect();
            Ok(Some(Base {
                extract: provider,
                filters: Vec::new(),
                columns,
            }))
        }
        LogicalPlan::Filter(f) => {
            let Some(mut base) = base_of(&f.input)? else {
                return Ok(None);
            };
            let Some(p) = substitute(&f.predicate, &base.columns)? else {
                return Ok(None);
            };
            base.filters.push(p);
            Ok(Some(base))
        }
        LogicalPlan::Projection(p) => {
            let Some(mut base) = base_of(&p.input)? else {
                return Ok(None);
            };
            let mut columns = HashMap::new();
            for (e, c) in p.expr.iter().zip(p.schema.columns()) {
                let Some(s) = substitute(e, &base.columns)? else {
                    return Ok(None);
                };
                columns.insert(c, s.unalias_nested().data);
            }
            base.columns = columns;
            Ok(Some(base))
        }
        LogicalPlan::SubqueryAlias(a) => {
            let Some(mut base) = base_of(&a.input)? else {
                return Ok(None);
            };
            let inner = a.input.schema().columns();
            let mut columns = HashMap::new();
            for (outer, inner) in a.schema.columns().into_iter().zip(inner) {
                let Some(e) = base.columns.get(&inner) else {
                    return Ok(None);
                };
                columns.insert(outer, e.clone());
            }
            base.columns = columns;
            Ok(Some(base))
        }
        _ => Ok(None),
    }
}

/// `e` with every column replaced by its expression over the copy; `None` when `e`
/// holds something that cannot be moved (a subquery, a volatile function).
fn substitute(e: &Expr, columns: &HashMap<Column, Expr>) -> DfResult<Option<Expr>> {
    let mut ok = true;
    let out = e.clone().transform_up(|x| match x {
        Expr::Column(c) => match columns.get(&c) {
            Some(b) => Ok(Transformed::yes(b.clone())),
            None => {
                ok = false;
                Ok(Transformed::no(Expr::Column(c)))
            }
        },
        Expr::ScalarSubquery(_)
        | Expr::Exists(_)
        | Expr::InSubquery(_)
        | Expr::OuterReferenceColumn(..) => {
            ok = false;
            Ok(Transformed::no(x))
        }
        Expr::ScalarFunction(ref f)
            if f.func.signature().volatility != datafusion::logical_expr::Volatility::Immutable =>
        {
            ok = false;
            Ok(Transformed::no(x))
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(ok.then_some(out.data))
}

/// The rollup plan that answers `agg`, if one can.
fn answer(agg: &Aggregate) -> DfResult<Option<LogicalPlan>> {
    let Some(base) = base_of(&agg.input)? else {
        return Ok(None);
    };
    let Some(extract) = (base.extract.as_ref() as &dyn std::any::Any).downcast_ref::<Extract>()
    else {
        return Ok(None);
    };
    if extract.rollups.is_empty()
        || agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
    {
        return Ok(None);
    }
    let mut groups = Vec::new();
    for g in &agg.group_expr {
        match substitute(g, &base.columns)? {
            Some(e) => groups.push(e),
            None => return Ok(None),
        }
    }
    for r in &extract.rollups {
        if let Some(plan) = try_rollup(agg, r, &base.filters, &groups, &base.columns)? {
            return Ok(Some(plan));
        }
    }
    Ok(None)
}

/// The columns an expression reads, by name.
fn names(e: &Expr) -> HashSet<String> {
    e.column_refs()
        .into_iter()
        .map(|c| c.name.clone())
        .collect()
}

fn try_rollup(
    agg: &Aggregate,
    r: &BuiltRollup,
    filters: &[Expr],
    groups: &[Expr],
    columns: &HashMap<Column, Expr>,
) -> DfResult<Option<LogicalPlan>> {
    let has: HashSet<&str> = r.def.columns.iter().map(String::as_str).collect();
    let readable = |e: &Expr| names(e).iter().all(|n| has.contains(n.as_str()));
    if !filters.iter().all(readable) || !groups.iter().all(readable) {
        return Ok(None);
    }
    let grouped: HashSet<String> = groups
        .iter()
        .filter_map(|g| match g {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        })
        .collect();
    let exact = r.def.dims.iter().all(|d| grouped.contains(d));
    let mut aggs = Vec::new();
    for a in &agg.aggr_expr {
        let Some(e) = reaggregate(a, &r.def, exact, columns)? else {
            return Ok(None);
        };
        aggs.push(e);
    }
    let scan = LogicalPlanBuilder::scan(
        r.label.clone(),
        provider_as_source(Arc::clone(&r.table) as Arc<dyn TableProvider>),
        None,
    )?;
    let scan = match conjunction(filters.iter().cloned()) {
        Some(f) => scan.filter(f)?,
        None => scan,
    };
    let grouped_plan = scan.aggregate(groups.to_vec(), aggs)?.build()?;
    Ok(Some(restore_schema(grouped_plan, &agg.schema)?))
}

/// The rollup's re-aggregation of one of the query's aggregates, if it has one.
fn reaggregate(
    a: &Expr,
    def: &RollupDef,
    exact: bool,
    columns: &HashMap<Column, Expr>,
) -> DfResult<Option<Expr>> {
    use datafusion::functions_aggregate::expr_fn::{max, min, sum};
    let Expr::AggregateFunction(AggregateFunction { func, params }) =
        a.clone().unalias_nested().data
    else {
        return Ok(None);
    };
    if params.filter.is_some() || !params.order_by.is_empty() || params.args.len() != 1 {
        return Ok(None);
    }
    let Some(arg) = substitute(&params.args[0], columns)? else {
        return Ok(None);
    };
    // Type coercion may have cast the column (`sum(CAST(quantity AS Int64))`); the
    // rollup's part was coerced the same way when it was built.
    let column = match &arg {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) if matches!(c.expr.as_ref(), Expr::Column(_)) => {
            c.expr.column_refs().iter().next().map(|c| c.name.clone())
        }
        Expr::Literal(v, _) if !v.is_null() && func.name() == "count" => None,
        _ => return Ok(None),
    };
    let agg = match (func.name(), params.distinct) {
        ("sum", false) => Aggregation::Sum,
        ("count", false) => Aggregation::Count,
        ("count", true) => Aggregation::CountDistinct,
        ("avg", false) => Aggregation::Avg,
        ("min", _) => Aggregation::Min,
        ("max", _) => Aggregation::Max,
        _ => return Ok(None),
    };
    let Some(part) = def
        .parts
        .iter()
        .find(|p| p.agg == agg && p.column == column)
    else {
        return Ok(None);
    };
    let stored = Expr::Column(Column::new_unqualified(part.alias.clone()));
    Ok(match agg {
        Aggregation::Sum => Some(sum(stored)),
        Aggregation::Min => Some(min(stored)),
        Aggregation::Max => Some(max(stored)),
        Aggregation::Count => Some(sum(stored)),
        // One rollup row per group: its value is the group's.
        Aggregation::Avg | Aggregation::CountDistinct if exact => Some(max(stored)),
        Aggregation::Avg | Aggregation::CountDistinct => None,
    })
}

/// Project the rollup's aggregate to exactly the schema the query's aggregate had:
/// same qualifiers, names and types (a count of no rows is 0, not NULL).
fn restore_schema(plan: LogicalPlan, schema: &DFSchemaRef) -> DfResult<LogicalPlan> {
    let input_schema = Arc::clone(plan.schema());
    let mut exprs = Vec::new();
    for ((q, field), (hq, have)) in schema.iter().zip(input_schema.iter()) {
        let mut e = Expr::Column(Column::new(hq.cloned(), have.name()));
        if have.data_type() != field.data_type() {
            e = cast(e, field.data_type().clone());
        }
        if !field.is_nullable() && have.is_nullable() {
            e = datafusion::functions::expr_fn::coalesce(vec![
                e,
                lit(ScalarValue::new_zero(field.data_type())?),
            ]);
        }
        let _ = e.get_type(&input_schema)?;
        exprs.push(e.alias_qualified(q.cloned(), field.name()));
    }
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_finer_granularity_determines_only_what_it_nests_in() {
        use Granularity::{Day, Hour, Month, Quarter, Week, Year};
        assert!(derivable(Month, Day) && derivable(Week, Day) && derivable(Year, Quarter));
        assert!(derivable(Day, Hour));
        // A week can straddle two months, quarters or years.
        assert!(!derivable(Month, Week) && !derivable(Year, Week));
        assert!(!derivable(Day, Month) && !derivable(Month, Month));
    }

    #[test]
    fn a_rollup_keeps_the_granularities_its_dimensions_determine() {
        let schema = Arc::new(Schema::new(
            ["region", "amount", "d_day", "d_week", "d_month", "d_year"]
                .map(|n| Field::new(n, DataType::Utf8, true))
                .to_vec(),
        ));
        let grans: Vec<(String, Granularity, String)> = [
            (Granularity::Day, "d_day"),
            (Granularity::Week, "d_week"),
            (Granularity::Month, "d_month"),
            (Granularity::Year, "d_year"),
        ]
        .into_iter()
        .map(|(g, c)| ("d".to_owned(), g, c.to_owned()))
        .collect();
        let measures = crate::config::parse(
            "[[source]]\nname = \"l\"\nkind = \"lake\"\npath = \".\"\n[[workspace]]\nname = \"w\"\n\
             [[dataset]]\nworkspace = \"w\"\nname = \"t\"\nsource = \"l\"\ntable = \"t\"\n\
             [dataset.acceleration]\n\
             [[dataset.measure]]\nname = \"revenue\"\nagg = \"sum\"\ncolumn = \"amount\"\n\
             [[dataset.measure]]\nname = \"n\"\nagg = \"count\"\n\
             [[dataset.measure]]\nname = \"per\"\nexpr = \"MEASURE(revenue) / MEASURE(n)\"\n",
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap()
        .datasets[0]
            .measures
            .clone();
        let config = RollupConfig {
            name: "r".into(),
            dimensions: vec!["region".into(), "d_month".into()],
            measures: vec!["per".into()],
            origin: crate::config::Origin {
                file: "t.toml".into(),
                line: 1,
            },
        };
        let def = RollupDef::resolve(&config, &schema, &measures, &grans).unwrap();
        assert_eq!(def.columns, ["region", "d_month", "d_year"]);
        let parts: Vec<(Aggregation, Option<&str>)> = def
            .parts
            .iter()
            .map(|p| (p.agg, p.column.as_deref()))
            .collect();
        assert_eq!(
            parts,
            [
                (Aggregation::Sum, Some("amount")),
                (Aggregation::Count, None)
            ]
        );
    }
}
