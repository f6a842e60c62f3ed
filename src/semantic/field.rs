//! Calculated fields (计算字段): columns a dataset computes with a SQL expression over its
//! other columns and fields.
//!
//! Fields are added in dependency order, one projection each, so a field can use another
//! and every field is type-checked by planning it at load. A cycle between fields is a
//! config error naming the cycle.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::quote_ident;
use crate::config::{ConfigError, FieldConfig};

/// The fields in an order where each comes after the fields it uses.
///
/// # Errors
/// A field whose expression does not parse, or fields that depend on each other in a cycle.
pub fn order<'a>(
    fields: &'a [FieldConfig],
    dataset: &str,
) -> Result<Vec<&'a FieldConfig>, ConfigError> {
    let by_name: HashMap<&str, &FieldConfig> =
        fields.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    for f in fields {
        let used = identifiers(&f.expr).map_err(|m| error(dataset, f, m))?;
        deps.insert(
            &f.name,
            used.iter()
                .filter_map(|u| by_name.get(u.as_str()).map(|d| d.name.as_str()))
                .collect(),
        );
    }
    let mut ordered = Vec::new();
    let mut state: HashMap<&str, bool> = HashMap::new(); // false = visiting, true = done
    for f in fields {
        visit(&f.name, &deps, &mut state, &mut Vec::new(), &mut ordered).map_err(|cycle| {
            error(
                dataset,
                f,
                format!("calculated fields form a cycle: {}", cycle.join(" → ")),
            )
        })?;
    }
    Ok(ordered.into_iter().map(|n| by_name[n]).collect())
}

/// Depth-first topological sort; `Err` carries the cycle.
fn visit<'a>(
    name: &'a str,
    deps: &HashMap<&'a str, Vec<&'a str>>,
    state: &mut HashMap<&'a str, bool>,
    path: &mut Vec<&'a str>,
    ordered: &mut Vec<&'a str>,
) -> Result<(), Vec<String>> {
    match state.get(name) {
        Some(true) => return Ok(()),
        Some(false) => {
            let start = path.iter().position(|p| *p == name).unwrap_or(0);
            let mut cycle: Vec<String> = path[start..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(name.to_owned());
            return Err(cycle);
        }
        None => {}
    }
    state.insert(name, false);
    path.push(name);
    for dep in deps.get(name).into_iter().flatten() {
        visit(dep, deps, state, path, ordered)?;
    }
    path.pop();
    state.insert(name, true);
    ordered.push(name);
    Ok(())
}

/// Unqualified column names an expression uses (lower-cased unless quoted).
fn identifiers(expr: &str) -> Result<Vec<String>, String> {
    let parsed: Expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expr)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    let _ = visit_expressions(&parsed, |e| {
        let ident = match e {
            Expr::Identifier(i) => Some(i),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if let Some(i) = ident {
            names.push(if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_lowercase()
            });
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(names)
}

/// The dataset's SQL with one more column: the field.
pub fn wrap(sql: &str, field: &FieldConfig) -> String {
    format!(
        "SELECT t.*, ({}) AS {} FROM ({sql}) AS t",
        field.expr,
        quote_ident(&field.name)
    )
}

/// An error located at the field's expression.
pub fn error(dataset: &str, field: &FieldConfig, message: String) -> ConfigError {
    ConfigError::at(
        &field.origin,
        format!("dataset \"{dataset}\".field \"{}\".expr", field.name),
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn field(name: &str, expr: &str) -> FieldConfig {
        FieldConfig {
            name: name.into(),
            expr: expr.into(),
            description: String::new(),
            label: String::new(),
            origin: Origin {
                file: "m.toml".into(),
                line: 7,
            },
        }
    }

    #[test]
    fn fields_come_after_the_fields_they_use() {
        let fields = [
            field("margin", "profit / amount"),
            field("profit", "amount - cost"),
        ];
        let names: Vec<&str> = order(&fields, "sales")
            .unwrap()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["profit", "margin"]);
    }

    #[test]
    fn a_cycle_is_reported_with_its_path() {
        let fields = [field("a", "b + 1"), field("b", "c * 2"), field("c", "a")];
        let err = order(&fields, "sales").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.toml:7: dataset \"sales\".field \"a\".expr: calculated fields form a cycle: a → b → c → a"
        );
    }
}
