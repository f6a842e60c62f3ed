//! `MEASURE(name)`: a measure of a dataset used by name in a query.
//!
//! The call is replaced, in the client's statement, by the measure's aggregate over the
//! dataset's rows (`sum(amount)`, `count(DISTINCT customer_id)`), so a non-additive measure
//! is always computed from rows, never by re-aggregating aggregates. A derived measure
//! (`MEASURE(profit) / MEASURE(revenue)`) expands into its expression over those
//! aggregates: a ratio of sums, never a sum of ratios. A measure is looked up among the
//! datasets the statement reads; an unknown or ambiguous name is an error.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, visit_relations, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, SelectItem, SetExpr, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{quote_ident, Dataset};
use crate::config::{Aggregation, ConfigError, DatasetConfig, MeasureConfig, MeasureDef};
use crate::error::Error;

/// Replace every `MEASURE(name)` in `stmt` by the measure's aggregate.
///
/// # Errors
/// 42703 for an unknown measure, 42702 for a name two read datasets define, 42601 for a
/// malformed call.
pub fn expand(stmt: &mut Statement, datasets: &[Dataset]) -> Result<(), Error> {
    if !mentions_measure(stmt) {
        return Ok(());
    }
    let read = datasets_read(stmt, datasets);
    name_top_level_measures(stmt);
    let flow = visit_expressions_mut(stmt, |expr| {
        let Some(call) = measure_call(expr) else {
            return ControlFlow::Continue(());
        };
        match call.and_then(|(qualifier, name)| replacement(&read, qualifier.as_ref(), &name, 0)) {
            Ok(new) => {
                *expr = new;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn mentions_measure(stmt: &Statement) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(stmt, |expr| {
        found = matches!(expr, Expr::Function(f) if is_measure_name(f));
        if found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    found
}

fn is_measure_name(f: &datafusion::sql::sqlparser::ast::Function) -> bool {
    f.name.0.len() == 1
        && f.name.0[0]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("measure"))
}

/// The datasets a statement reads, by the last part of each table name.
fn datasets_read<'a>(stmt: &Statement, datasets: &'a [Dataset]) -> Vec<&'a Dataset> {
    let mut read: Vec<&Dataset> = Vec::new();
    let _ = visit_relations(stmt, |name| {
        if let Some(table) = name.0.last().and_then(|p| p.as_ident()) {
            let table = ident_text(table);
            if let Some(d) = datasets.iter().find(|d| d.name == table) {
                if !read.iter().any(|r| r.name == d.name) {
                    read.push(d);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    read
}

/// `SELECT MEASURE(revenue)` names its column `revenue`, as the measure is called.
fn name_top_level_measures(stmt: &mut Statement) {
    let Statement::Query(query) = stmt else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        if let Some(Ok((_, name))) = measure_call(expr) {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::new(name),
            };
        }
    }
}

/// `Some(Ok((qualifier, name)))` for `MEASURE([qualifier.]name)`, `Some(Err)` for a
/// malformed `MEASURE(...)`, `None` for anything else.
fn measure_call(expr: &Expr) -> Option<Result<(Option<Ident>, String), Error>> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if !is_measure_name(f) {
        return None;
    }
    let malformed =
        || Error::Syntax("MEASURE takes one measure name, as in MEASURE(revenue)".into());
    let FunctionArguments::List(list) = &f.args else {
        return Some(Err(malformed()));
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
        return Some(Err(malformed()));
    };
    Some(match arg {
        Expr::Identifier(i) => Ok((None, ident_text(i))),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            Ok((Some(parts[0].clone()), ident_text(&parts[1])))
        }
        _ => Err(malformed()),
    })
}

/// Unquoted identifiers fold to lower case, as in PostgreSQL.
fn ident_text(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Derived measures nest at most this deep (cycles are refused at load; this is a backstop).
const MAX_DEPTH: usize = 16;

fn replacement(
    read: &[&Dataset],
    qualifier: Option<&Ident>,
    name: &str,
    depth: usize,
) -> Result<Expr, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Internal(format!(
            "measure \"{name}\" nests too deeply"
        )));
    }
    let candidates: Vec<(&Dataset, &MeasureConfig)> = read
        .iter()
        .filter_map(|d| d.measures.iter().find(|m| m.name == name).map(|m| (*d, m)))
        .collect();
    let measure = match candidates.as_slice() {
        [(_, m)] => *m,
        [] => {
            let names: Vec<&str> = read.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::UndefinedColumn(format!(
                "measure \"{name}\" does not exist in {}",
                if names.is_empty() {
                    "the datasets of this query".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        }
        _ => {
            return Err(Error::AmbiguousColumn(format!(
                "measure \"{name}\" is defined by more than one dataset of this query"
            )))
        }
    };
    let text = measure_sql(measure, qualifier);
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| {
            Error::Internal(format!(
                "measure \"{name}\" compiled to bad SQL {text}: {e}"
            ))
        })?;
    if matches!(measure.definition, MeasureDef::Derived(_)) {
        let flow = visit_expressions_mut(&mut expr, |inner| {
            let Some(call) = measure_call(inner) else {
                return ControlFlow::Continue(());
            };
            match call.and_then(|(_, n)| replacement(read, qualifier, &n, depth + 1)) {
                Ok(new) => {
                    *inner = new;
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(e),
            }
        });
        if let ControlFlow::Break(e) = flow {
            return Err(e);
        }
        expr = Expr::Nested(Box::new(expr));
    }
    Ok(expr)
}

/// Check the derived measures of a dataset at load: every `MEASURE(x)` they use exists,
/// and they do not use each other in a cycle.
pub fn check(d: &DatasetConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut uses: HashMap<&str, Vec<String>> = HashMap::new();
    for m in &d.measures {
        let MeasureDef::Derived(text) = &m.definition else {
            continue;
        };
        let err = |msg: String| {
            ConfigError::at(
                &m.origin,
                format!("dataset \"{}\".measure \"{}\".expr", d.name, m.name),
                msg,
            )
        };
        match measures_used(text) {
            Ok(used) => {
                for u in used
                    .iter()
                    .filter(|u| !d.measures.iter().any(|x| &x.name == *u))
                {
                    errors.push(err(format!("no measure \"{u}\" in dataset \"{}\"", d.name)));
                }
                uses.insert(&m.name, used);
            }
            Err(e) => errors.push(err(e)),
        }
    }
    for m in &d.measures {
        if let Some(cycle) = find_cycle(&m.name, &uses, &mut Vec::new()) {
            errors.push(ConfigError::at(
                &m.origin,
                format!("dataset \"{}\".measure \"{}\".expr", d.name, m.name),
                format!("derived measures form a cycle: {}", cycle.join(" → ")),
            ));
            break;
        }
    }
    errors
}

fn find_cycle(
    name: &str,
    uses: &HashMap<&str, Vec<String>>,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|p| p == name) {
        let mut cycle = path[start..].to_vec();
        cycle.push(name.to_owned());
        return Some(cycle);
    }
    path.push(name.to_owned());
    for next in uses.get(name).into_iter().flatten() {
        if let Some(c) = find_cycle(next, uses, path) {
            return Some(c);
        }
    }
    path.pop();
    None
}

/// The measure names an expression uses through `MEASURE(x)`.
fn measures_used(text: &str) -> Result<Vec<String>, String> {
    let expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| e.to_string())?;
    let mut used = Vec::new();
    let flow =
        datafusion::sql::sqlparser::ast::visit_expressions(&expr, |e| match measure_call(e) {
            Some(Ok((_, name))) => {
                used.push(name);
                ControlFlow::Continue(())
            }
            Some(Err(err)) => ControlFlow::Break(err.to_string()),
            None => ControlFlow::Continue(()),
        });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(used),
    }
}

/// The SQL a measure stands for: its aggregate, or its derived expression (with its inner
/// `MEASURE()` calls still to expand).
pub fn measure_sql(m: &MeasureConfig, qualifier: Option<&Ident>) -> String {
    match &m.definition {
        MeasureDef::Aggregate { agg, column } => aggregate_sql(*agg, column.as_deref(), qualifier),
        MeasureDef::Derived(expr) => expr.clone(),
    }
}

/// The SQL of an aggregate, e.g. `count(DISTINCT s."customer_id")`.
fn aggregate_sql(agg: Aggregation, column: Option<&str>, qualifier: Option<&Ident>) -> String {
    let column = match column {
        None => return "count(*)".to_owned(),
        Some(c) => match qualifier {
            Some(q) => format!("{q}.{}", quote_ident(c)),
            None => quote_ident(c),
        },
    };
    match agg {
        Aggregation::Sum => format!("sum({column})"),
        Aggregation::Count => format!("count({column})"),
        Aggregation::CountDistinct => format!("count(DISTINCT {column})"),
        Aggregation::Avg => format!("avg({column})"),
        Aggregation::Min => format!("min({column})"),
        Aggregation::Max => format!("max({column})"),
    }
}
