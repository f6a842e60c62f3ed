//! What each engine's SQL can say, and how it is written.
//!
//! Pushdown must never change an answer. [`can_run`] is the rule: a plan node goes to a
//! source only when the source computes exactly what DataFusion would. Where an engine
//! differs (MySQL's `/` on integers returns a decimal, its `CONCAT` is NULL when any
//! argument is, it sorts NULLs first), the node stays in biproxy, above the pushed part.
//! Known and accepted: string comparison and grouping follow the source's collation (a
//! case-insensitive MySQL collation matches `'east'` to `'East'`, as it does for every
//! other client of that database).

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprSchemable, JoinType, LogicalPlan, Operator, SkipType, SortExpr,
};
use datafusion::sql::sqlparser::ast;
use datafusion::sql::unparser::dialect::{
    CustomDialectBuilder, Dialect, MySqlDialect, PostgreSqlDialect,
};

use crate::config::Engine;

/// The SQL dialect biproxy writes for `engine`.
pub fn for_engine(engine: Engine) -> Arc<dyn Dialect> {
    match engine {
        Engine::Postgres => Arc::new(PostgreSqlDialect {}),
        Engine::MySql => Arc::new(MySqlDialect {}),
        Engine::SqlServer => Arc::new(
            CustomDialectBuilder::new()
                .with_identifier_quote_style('"')
                .with_supports_nulls_first_in_sort(false)
                .with_requires_derived_table_alias(true)
                .with_utf8_cast_dtype(ast::DataType::Nvarchar(Some(ast::CharacterLength::Max)))
                .with_large_utf8_cast_dtype(ast::DataType::Nvarchar(Some(
                    ast::CharacterLength::Max,
                )))
                .with_int64_cast_dtype(ast::DataType::BigInt(None))
                .with_float64_ast_dtype(ast::DataType::Float(ast::ExactNumberInfo::None))
                .with_timestamp_cast_dtype(
                    ast::DataType::Custom(
                        ast::ObjectName::from(vec![ast::Ident::new("DATETIME2")]),
                        vec![],
                    ),
                    ast::DataType::Custom(
                        ast::ObjectName::from(vec![ast::Ident::new("DATETIMEOFFSET")]),
                        vec![],
                    ),
                )
                .build(),
        ),
    }
}

/// Scalar functions whose result on `engine` equals DataFusion's.
fn scalar_function_ok(engine: Engine, name: &str) -> bool {
    const COMMON: &[&str] = &[
        "abs",
        "ceil",
        "floor",
        "sqrt",
        "lower",
        "upper",
        "ltrim",
        "rtrim",
        "substr",
        "character_length",
        "char_length",
        "coalesce",
        "nullif",
        "left",
        "right",
        "replace",
        "lpad",
        "rpad",
    ];
    const POSTGRES: &[&str] = &[
        "round",
        "btrim",
        "concat",
        "strpos",
        "starts_with",
        "date_trunc",
        "md5",
        "length",
        "ln",
        "exp",
        "power",
    ];
    COMMON.contains(&name)
        || match engine {
            Engine::Postgres => POSTGRES.contains(&name),
            Engine::MySql | Engine::SqlServer => false,
        }
}

/// Aggregates every engine computes as DataFusion does (SUM/AVG of integers may come back
/// wider; the result is cast to the planned type).
fn aggregate_ok(name: &str) -> bool {
    matches!(name, "count" | "sum" | "min" | "max" | "avg")
}

fn operator_ok(engine: Engine, op: Operator) -> bool {
    use Operator::*;
    match op {
        Eq | NotEq | Lt | LtEq | Gt | GtEq | Plus | Minus | Multiply | And | Or | StringConcat => {
            true
        }
        Divide | Modulo | IsDistinctFrom | IsNotDistinctFrom => engine == Engine::Postgres,
        _ => false,
    }
}

/// Whether `expr` means the same on `engine` as in DataFusion.
pub fn expr_ok(engine: Engine, expr: &Expr) -> bool {
    let mut ok = true;
    let _ = expr.apply(|e| {
        ok &= match e {
            Expr::Column(_)
            | Expr::Literal(..)
            | Expr::Alias(_)
            | Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::Between(_)
            | Expr::Case(_)
            | Expr::InList(_)
            | Expr::Negative(_)
            | Expr::Like(_) => true,
            Expr::BinaryExpr(BinaryExpr { op, .. }) => operator_ok(engine, *op),
            Expr::Cast(c) => cast_ok(engine, c.field.data_type()),
            Expr::ScalarFunction(f) => scalar_function_ok(engine, f.name()),
            Expr::AggregateFunction(a) => {
                aggregate_ok(a.func.name())
                    && a.params.filter.is_none()
                    && a.params.order_by.is_empty()
            }
            _ => false,
        };
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

fn cast_ok(engine: Engine, to: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType::*;
    match to {
        Int64 | Int32 | Utf8 | Date32 | Decimal128(..) => true,
        Int16 | Float64 | Float32 | Boolean | Timestamp(_, None) => engine == Engine::Postgres,
        _ => false,
    }
}

/// Whether `engine` can run plan node `plan` (its own operation and expressions; its
/// inputs are judged separately).
pub fn can_run(engine: Engine, plan: &LogicalPlan) -> bool {
    let node_ok = match plan {
        LogicalPlan::TableScan(_)
        | LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Aggregate(_)
        | LogicalPlan::SubqueryAlias(_) => true,
        // SQL Server can skip rows only after an ORDER BY (OFFSET ... FETCH).
        LogicalPlan::Limit(l) => {
            engine != Engine::SqlServer
                || matches!(l.get_skip_type(), Ok(SkipType::Literal(0)))
                || matches!(l.input.as_ref(), LogicalPlan::Sort(_))
        }
        LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_)) => true,
        LogicalPlan::Join(j) => match j.join_type {
            JoinType::Inner | JoinType::Left | JoinType::Right => true,
            JoinType::Full => engine == Engine::Postgres,
            _ => false,
        },
        LogicalPlan::Sort(s) => {
            engine == Engine::Postgres
                || s.expr
                    .iter()
                    .all(|e| mysql_null_order_ok(e, s.input.schema()))
        }
        _ => false,
    };
    node_ok && plan.expressions().iter().all(|e| expr_ok(engine, e))
}

/// Rewrite `LIMIT n [OFFSET m]` for SQL Server: `TOP n` when there is no ORDER BY and no
/// offset, else `OFFSET m ROWS FETCH FIRST n ROWS ONLY` after the ORDER BY. [`can_run`]
/// keeps an offset without ORDER BY in biproxy, so every LIMIT has one of these forms.
///
/// # Errors
/// Never; the signature is that of an AST analyzer.
pub fn sql_server_limits(
    mut statement: ast::Statement,
) -> datafusion::error::Result<ast::Statement> {
    let _ = ast::VisitMut::visit(&mut statement, &mut SqlServerLimits);
    Ok(statement)
}

/// Applies [`sql_server_limit`] to every query, derived tables included.
struct SqlServerLimits;

impl ast::VisitorMut for SqlServerLimits {
    type Break = ();

    fn post_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
        sql_server_limit(q);
        std::ops::ControlFlow::Continue(())
    }
}

fn sql_server_limit(q: &mut ast::Query) {
    let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = q.limit_clause.take() else {
        return;
    };
    let zero = ast::Expr::value(ast::Value::Number("0".into(), false));
    let offset = offset.map(|o| o.value).filter(|o| *o != zero);
    match (&q.order_by, &mut *q.body, limit, offset) {
        (_, _, None, None) => {}
        (None, ast::SetExpr::Select(select), Some(n), None) => {
            select.top = Some(ast::Top {
                with_ties: false,
                percent: false,
                quantity: Some(ast::TopQuantity::Expr(n)),
            });
        }
        (_, _, limit, offset) => {
            // OFFSET ... FETCH needs an ORDER BY; any order will do where none was asked.
            if q.order_by.is_none() {
                q.order_by = any_order();
            }
            q.limit_clause = Some(ast::LimitClause::LimitOffset {
                limit: None,
                offset: Some(ast::Offset {
                    value: offset.unwrap_or(zero),
                    rows: ast::OffsetRows::Rows,
                }),
                limit_by: vec![],
            });
            q.fetch = limit.map(|n| ast::Fetch {
                with_ties: false,
                percent: false,
                quantity: Some(n),
            });
        }
    }
}

/// `ORDER BY (SELECT NULL)`: SQL Server's way of saying that any order will do.
fn any_order() -> Option<ast::OrderBy> {
    use datafusion::sql::sqlparser::{dialect::MsSqlDialect, parser::Parser};
    let parsed = Parser::parse_sql(&MsSqlDialect {}, "SELECT 1 ORDER BY (SELECT NULL)").ok()?;
    match parsed.into_iter().next()? {
        ast::Statement::Query(q) => q.order_by,
        _ => None,
    }
}

/// MySQL puts NULLs first ascending and last descending, and cannot be told otherwise.
fn mysql_null_order_ok(sort: &SortExpr, schema: &DFSchema) -> bool {
    sort.nulls_first == sort.asc || !sort.expr.nullable(schema).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn mysql_keeps_integer_division_and_concat_in_biproxy() {
        let div = col("a") / col("b");
        assert!(expr_ok(Engine::Postgres, &div));
        assert!(!expr_ok(Engine::MySql, &div));
        let concat = datafusion::functions::string::expr_fn::concat(vec![col("a"), lit("x")]);
        assert!(expr_ok(Engine::Postgres, &concat));
        assert!(!expr_ok(Engine::MySql, &concat));
        assert!(expr_ok(
            Engine::MySql,
            &col("a").eq(lit(1)).and(col("b").is_null())
        ));
    }

    fn sql_server(sql: &str) -> String {
        use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};
        let statement = Parser::parse_sql(&GenericDialect {}, sql)
            .unwrap()
            .remove(0);
        sql_server_limits(statement).unwrap().to_string()
    }

    #[test]
    fn sql_server_limits_become_top_or_offset_fetch() {
        assert_eq!(
            sql_server("SELECT a FROM t LIMIT 10"),
            "SELECT TOP (10) a FROM t"
        );
        assert_eq!(
            sql_server("SELECT a FROM t ORDER BY a LIMIT 10 OFFSET 5"),
            "SELECT a FROM t ORDER BY a OFFSET 5 ROWS FETCH FIRST 10 ROWS ONLY"
        );
        assert_eq!(
            sql_server("SELECT a FROM t ORDER BY a LIMIT 3"),
            "SELECT a FROM t ORDER BY a OFFSET 0 ROWS FETCH FIRST 3 ROWS ONLY"
        );
        assert_eq!(
            sql_server("SELECT * FROM (SELECT a FROM t LIMIT 3) AS x ORDER BY a"),
            "SELECT * FROM (SELECT TOP (3) a FROM t) AS x ORDER BY a"
        );
        assert_eq!(sql_server("SELECT a FROM t"), "SELECT a FROM t");
        assert_eq!(
            sql_server("SELECT a FROM t LIMIT 5 OFFSET 0"),
            "SELECT TOP (5) a FROM t"
        );
        assert_eq!(
            sql_server("SELECT a FROM t UNION ALL SELECT a FROM u LIMIT 5"),
            "SELECT a FROM t UNION ALL SELECT a FROM u ORDER BY (SELECT NULL) OFFSET 0 ROWS FETCH FIRST 5 ROWS ONLY"
        );
    }
}
