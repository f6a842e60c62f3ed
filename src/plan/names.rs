//! Result column names as PostgreSQL gives them.
//!
//! DataFusion names an unaliased expression after its full text (`count(*)`, `Int64(1)`);
//! PostgreSQL names it after the function (`count`), the column, the cast type, or
//! `?column?`. Clients key on these names (ORMs map them to fields), so biproxy reports
//! PostgreSQL's on the wire while the plan keeps DataFusion's.

use datafusion::sql::sqlparser::ast::{DataType, Expr, Query, SelectItem, SetExpr, Statement};

/// PostgreSQL's names for the result columns of `stmt`, when they can be derived from the
/// select list alone (no `*`); `None` otherwise, and the engine's names stand.
pub fn pg_column_names(stmt: &Statement) -> Option<Vec<String>> {
    let Statement::Query(query) = stmt else {
        return None;
    };
    select_names(query)
}

fn select_names(query: &Query) -> Option<Vec<String>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(expr_name(e)),
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect()
}

fn expr_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|i| i.value.clone()).unwrap_or_default()
        }
        Expr::Function(f) => f
            .name
            .0
            .last()
            .map(|p| {
                p.as_ident()
                    .map_or_else(|| p.to_string(), |i| i.value.to_lowercase())
            })
            .unwrap_or_default(),
        Expr::Nested(inner) => expr_name(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Function(_) => {
                expr_name(expr)
            }
            _ => type_name(data_type),
        },
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        _ => "?column?".into(),
    }
}

/// PostgreSQL's internal name of a type, used for `'1'::int` → `int4`.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4".into(),
        DataType::BigInt(_) | DataType::Int8(_) => "int8".into(),
        DataType::SmallInt(_) | DataType::Int2(_) => "int2".into(),
        DataType::Real | DataType::Float4 => "float4".into(),
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 => "float8".into(),
        DataType::Boolean | DataType::Bool => "bool".into(),
        DataType::Numeric(_) | DataType::Decimal(_) => "numeric".into(),
        DataType::Varchar(_) | DataType::CharacterVarying(_) => "varchar".into(),
        DataType::Char(_) | DataType::Character(_) => "bpchar".into(),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Option<Vec<String>> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        pg_column_names(&stmt)
    }

    #[test]
    fn matches_postgres_naming() {
        assert_eq!(
            names("SELECT 1, count(*), s.region, amount::text, '1'::int, version(), x AS y FROM s")
                .unwrap(),
            ["?column?", "count", "region", "amount", "int4", "version", "y"]
        );
        assert_eq!(names("SELECT * FROM s"), None);
    }
}
