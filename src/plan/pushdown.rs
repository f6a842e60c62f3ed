//! Pushdown: cut the largest parts of a plan that one database source can run, and send
//! each as one SQL statement in that source's dialect.
//!
//! Runs once, after every optimizer pass ([`PushdownPlanner`] is the session's query
//! planner), on a plan whose filters and projections are already pushed down and whose
//! star joins are expanded, so the statement asks the source for no more than the query
//! needs. Bottom-up, a node joins its inputs' source when all of them come from the same
//! source, the dialect computes the node exactly as DataFusion would
//! ([`crate::source::dialect::can_run`]) and the SQL generator can write it. Everything
//! else runs in biproxy above the pushed parts: slower, never wrong. A join between two
//! sources is such a node: each side is pushed to its source, the join runs here.
//!
//! Execution and the text shown by `EXPLAIN` (`VirtualExecutionPlan ... sql=...`) come from
//! `datafusion-federation`, whose plan node and planner this rule produces.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::utils::split_conjunction_owned;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, Projection, SubqueryAlias, TableScan,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::unparser::Unparser;
use datafusion_federation::sql::{SQLExecutor, SQLFederationPlanner, SQLTableSource};
use datafusion_federation::{get_table_source, FederatedPlanNode, FederatedQueryPlanner};

use crate::config::Engine;
use crate::source::dialect;

/// The session's query planner: pushes the optimized plan down, then plans it with
/// `datafusion-federation`'s planner, which turns each pushed part into one statement.
/// Planning `EXPLAIN` goes through here too, so it shows the statements.
#[derive(Debug, Default)]
pub struct PushdownPlanner {
    inner: FederatedQueryPlanner,
}

#[async_trait]
impl QueryPlanner for PushdownPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = push_down(plan.clone())?;
        if let Some(node) = whole_statement(&plan) {
            // The source runs all of it: nothing is left for DataFusion's physical
            // planner and optimizer passes to do, and a point query should not pay them.
            return node.planner.plan_federation(node, state).await;
        }
        self.inner.create_physical_plan(&plan, state).await
    }
}

/// The statement a plan consists of, when a source runs the whole plan.
fn whole_statement(plan: &LogicalPlan) -> Option<&FederatedPlanNode> {
    match plan {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<FederatedPlanNode>(),
        _ => None,
    }
}

/// The source a subtree can run on.
#[derive(Clone)]
struct Remote {
    context: String,
    engine: Engine,
    executor: Arc<dyn SQLExecutor>,
}

/// Replace the parts of `plan` that a database source can run by statements for it.
///
/// # Errors
/// Rebuilding a node with its rewritten inputs failed (a bug, not user input).
pub fn push_down(plan: LogicalPlan) -> Result<LogicalPlan> {
    if !has_remote_scan(&plan) {
        return Ok(plan);
    }
    let (plan, remote) = visit(plan)?;
    match remote {
        Some(r) => federate_writable(plan, &r),
        None => Ok(plan),
    }
}

/// Whether any scan (outside already-pushed parts) reads a database source.
fn has_remote_scan(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            found |= remote_of(scan).is_some();
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// Rewrite `plan`'s pushable parts; returns it with the source whose dialect can run it as
/// a whole. Whether the SQL generator can write it is asked once, of the largest such
/// subtree ([`federate_writable`]), not of every node on the way up.
fn visit(plan: LogicalPlan) -> Result<(LogicalPlan, Option<Remote>)> {
    if let LogicalPlan::TableScan(scan) = &plan {
        // A database table offers no filter pushdown of its own, so its scan is a plain
        // column list: always expressible, and it must be pushed (it cannot scan locally).
        let remote = remote_of(scan);
        return Ok((plan, remote));
    }
    if matches!(plan, LogicalPlan::Extension(_)) {
        return Ok((plan, None));
    }
    let has_subquery = plan
        .expressions()
        .iter()
        .any(|e| e.contains_outer() || has_subquery(e));
    let plan = if has_subquery {
        plan.map_subqueries(|sub| {
            let (p, r) = visit(sub)?;
            Ok(Transformed::yes(match r {
                Some(r) => federate_writable(p, &r)?,
                None => p,
            }))
        })?
        .data
    } else {
        plan
    };
    let inputs: Vec<LogicalPlan> = plan.inputs().into_iter().cloned().collect();
    let visited = inputs.into_iter().map(visit).collect::<Result<Vec<_>>>()?;
    let common = common_remote(&visited);
    if let Some(r) = common.filter(|r| !has_subquery && dialect::can_run(r.engine, &plan)) {
        return Ok((plan, Some(r)));
    }
    let inputs = visited
        .into_iter()
        .map(|(p, r)| match r {
            Some(r) => federate_writable(p, &r),
            None => Ok(p),
        })
        .collect::<Result<Vec<_>>>()?;
    let exprs = plan.expressions();
    Ok((plan.with_new_exprs(exprs, inputs)?, None))
}

/// Send a subtree that `remote`'s dialect can run as one statement, if the SQL generator
/// can write it; otherwise run its top node here and try each input the same way.
fn federate_writable(plan: LogicalPlan, remote: &Remote) -> Result<LogicalPlan> {
    let writable = matches!(plan, LogicalPlan::TableScan(_))
        || Unparser::new(remote.executor.dialect().as_ref())
            .plan_to_sql(&plan)
            .is_ok();
    if writable {
        return federate(plan, remote);
    }
    let inputs = plan
        .inputs()
        .into_iter()
        .cloned()
        .map(|p| federate_writable(p, remote))
        .collect::<Result<Vec<_>>>()?;
    let exprs = plan.expressions();
    plan.with_new_exprs(exprs, inputs)
}

/// The one source every input runs on, if there is one.
fn common_remote(inputs: &[(LogicalPlan, Option<Remote>)]) -> Option<Remote> {
    let first = inputs.first()?.1.clone()?;
    inputs
        .iter()
        .all(|(_, r)| r.as_ref().is_some_and(|r| r.context == first.context))
        .then_some(first)
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|x| {
        Ok(matches!(
            x,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ))
    })
    .unwrap_or(true)
}

/// The database source a scan reads, if it reads one.
fn remote_of(scan: &TableScan) -> Option<Remote> {
    let source = get_table_source(&scan.source).ok().flatten()?;
    let sql = (source.as_ref() as &dyn std::any::Any).downcast_ref::<SQLTableSource>()?;
    let executor = Arc::clone(&sql.provider.executor);
    let context = executor.compute_context()?;
    let engine = match context.split(':').next()? {
        "postgres" => Engine::Postgres,
        "mysql" => Engine::MySql,
        "sqlserver" => Engine::SqlServer,
        _ => return None,
    };
    Some(Remote {
        context,
        engine,
        executor,
    })
}

/// Wrap a subtree as one statement for `remote`.
///
/// # Errors
/// Reshaping the subtree failed (it only rebuilds nodes from their own parts: a bug).
fn federate(plan: LogicalPlan, remote: &Remote) -> Result<LogicalPlan> {
    let plan = for_sql(plan)?;
    let planner = Arc::new(SQLFederationPlanner::new(Arc::clone(&remote.executor)));
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(FederatedPlanNode::new(plan, planner)),
    }))
}

/// Shape a subtree the way the SQL generator writes correctly: filters folded into the
/// scans they sit on, one alias per table, an explicit projection over aggregates, and
/// no row count on a sort that a limit already bounds.
fn for_sql(plan: LogicalPlan) -> Result<LogicalPlan> {
    select_aggregates(single_aliases(scan_filters(limited_sorts(plan)?)?)?)
}

/// Drop the row count of a sort under a limit. The optimizer gives `LIMIT 2 OFFSET 1` over
/// a sort the count 3 (offset + limit) for a top-N sort; the SQL generator then writes
/// `LIMIT 3 OFFSET 1` and the database returns one row too many. The limit alone says it.
fn limited_sorts(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| match node {
        LogicalPlan::Limit(mut limit) => match limit.input.as_ref() {
            LogicalPlan::Sort(sort) if sort.fetch.is_some() => {
                let mut sort = sort.clone();
                sort.fetch = None;
                limit.input = Arc::new(LogicalPlan::Sort(sort));
                Ok(Transformed::yes(LogicalPlan::Limit(limit)))
            }
            _ => Ok(Transformed::no(LogicalPlan::Limit(limit))),
        },
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Fold each filter that sits directly on a scan into the scan. The SQL generator
/// re-qualifies a scan's own filters when a query aliases the table (`nation AS n1`), but
/// writes a filter node above it with the table's name, which the database rejects.
fn scan_filters(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| match node {
        LogicalPlan::Filter(filter) => match filter.input.as_ref() {
            LogicalPlan::TableScan(scan) => {
                let mut scan = scan.clone();
                scan.filters
                    .extend(split_conjunction_owned(filter.predicate.clone()));
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            _ => Ok(Transformed::no(LogicalPlan::Filter(filter))),
        },
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Replace each alias of an alias by the outer one alone. A dataset is a view, so a query
/// that names it `n1` holds `n1` over `nation` over the table, and the SQL generator then
/// writes `nation AS nation`, losing `n1`. Only the outer alias is visible above, so
/// dropping the inner one changes nothing.
fn single_aliases(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| match node {
        LogicalPlan::SubqueryAlias(outer) => match outer.input.as_ref() {
            LogicalPlan::SubqueryAlias(inner) => Ok(Transformed::yes(LogicalPlan::SubqueryAlias(
                SubqueryAlias::try_new(Arc::clone(&inner.input), outer.alias.clone())?,
            ))),
            _ => Ok(Transformed::no(LogicalPlan::SubqueryAlias(outer))),
        },
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Give every query block that ends in an aggregate an explicit projection of its columns,
/// in order. The optimizer drops such identity projections, and the SQL generator then
/// lists an aggregate's results before its group columns: the rows would come back with
/// their columns in the wrong places. A block is what one SELECT holds: sorts and limits
/// above, then filters (HAVING), then the aggregate; the projection goes between the
/// sorts and the filters, where the SQL generator expects it.
fn select_aggregates(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = fix_block(plan)?.data;
    plan.transform_down(|node| {
        if matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Filter(_)
        ) {
            return Ok(Transformed::no(node));
        }
        // Every other node's inputs each begin a query block of their own.
        node.map_children(fix_block)
    })
    .map(|t| t.data)
}

/// One query block: through its sorts and limits to a filter chain or aggregate.
fn fix_block(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    match plan {
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => plan.map_children(fix_block),
        _ if ends_in_aggregate(&plan) => {
            let columns = plan.schema().columns().into_iter().map(Expr::Column);
            Ok(Transformed::yes(LogicalPlan::Projection(
                Projection::try_new(columns.collect(), Arc::new(plan))?,
            )))
        }
        _ => Ok(Transformed::no(plan)),
    }
}

fn ends_in_aggregate(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Filter(f) => ends_in_aggregate(&f.input),
        _ => false,
    }
}
