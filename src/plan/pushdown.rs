//! Pushdown: cut the largest parts of a plan that one database source can run, and send
//! each as one SQL statement in that source's dialect.
//!
//! Runs last among the optimizer rules, on a plan whose filters and projections are
//! already pushed down, so the statement asks the source for no more than the query
//! needs. Bottom-up, a node joins its inputs' source when all of them come from the same
//! source, the dialect computes the node exactly as DataFusion would
//! ([`crate::source::dialect::can_run`]) and the SQL generator can write it. Everything
//! else runs in biproxy above the pushed parts: slower, never wrong. A join between two
//! sources is such a node: each side is pushed to its source, the join runs here.
//!
//! Execution and the text shown by `EXPLAIN` (`VirtualExecutionPlan ... sql=...`) come from
//! `datafusion-federation`, whose plan node and planner this rule produces.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::{Extension, LogicalPlan, TableScan};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::sql::unparser::Unparser;
use datafusion_federation::sql::{SQLExecutor, SQLFederationPlanner, SQLTableSource};
use datafusion_federation::{get_table_source, FederatedPlanNode};

use crate::config::Engine;
use crate::source::dialect;

/// The optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct Pushdown;

/// The source a subtree can run on.
#[derive(Clone)]
struct Remote {
    context: String,
    engine: Engine,
    executor: Arc<dyn SQLExecutor>,
}

impl OptimizerRule for Pushdown {
    fn name(&self) -> &str {
        "biproxy_pushdown"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        if !has_remote_scan(&plan) {
            return Ok(Transformed::no(plan));
        }
        let (plan, remote) = visit(plan)?;
        Ok(Transformed::yes(match remote {
            Some(r) => federate(plan, &r),
            None => plan,
        }))
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

/// Rewrite `plan`'s pushable parts; returns it with the source it could run on as a whole.
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
                Some(r) => federate(p, &r),
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
        if Unparser::new(r.executor.dialect().as_ref())
            .plan_to_sql(&plan)
            .is_ok()
        {
            return Ok((plan, Some(r)));
        }
    }
    let inputs = visited
        .into_iter()
        .map(|(p, r)| match r {
            Some(r) => federate(p, &r),
            None => p,
        })
        .collect();
    let exprs = plan.expressions();
    Ok((plan.with_new_exprs(exprs, inputs)?, None))
}

/// The one source every input runs on, if there is one.
fn common_remote(inputs: &[(LogicalPlan, Option<Remote>)]) -> Option<Remote> {
    let first = inputs.first()?.1.clone()?;
    inputs
        .iter()
        .all(|(_, r)| r.as_ref().is_some_and(|r| r.context == first.context))
        .then_some(first)
}

fn has_subquery(e: &datafusion::logical_expr::Expr) -> bool {
    use datafusion::logical_expr::Expr;
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
fn federate(plan: LogicalPlan, remote: &Remote) -> LogicalPlan {
    let planner = Arc::new(SQLFederationPlanner::new(Arc::clone(&remote.executor)));
    LogicalPlan::Extension(Extension {
        node: Arc::new(FederatedPlanNode::new(plan, planner)),
    })
}
