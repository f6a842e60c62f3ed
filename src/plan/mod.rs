//! From SQL text to something runnable: parse, classify, and plan.
//!
//! Owns the PostgreSQL-compatibility parser (shared by all sessions), the classification
//! of statements ([`classify`]), PostgreSQL result-column naming ([`names`]), and the
//! planning of queries against a session's context with DDL, DML and engine statements
//! disabled. Does not run anything: that is the session's job.

pub mod classify;
pub mod copy;
pub mod names;
pub mod pushdown;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::sql::parser::Statement as DfStatement;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{visit_relations, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser as SqlParser, ParserError};
use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::error::Error;
pub use classify::{Command, TransactionCommand};

/// Parses client SQL with the rewrites that let DataFusion answer what PostgreSQL clients
/// send (`::regclass`, `OPERATOR(pg_catalog.~)`, `COLLATE`, ...). Built once per server.
///
/// The compatibility parser also replaces a correlated scalar subquery in a SELECT list
/// by NULL (and stamps `LIMIT 1` on the others): harmless in the catalog queries drivers
/// send, a silently wrong answer in a user's query. So SQL that reads no catalog gets
/// every rewrite but that one.
#[derive(Debug)]
pub struct Parser {
    inner: PostgresCompatibilityParser,
    rules: Vec<Box<dyn SqlStatementRewriteRule>>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new()
    }
}

impl Parser {
    /// A parser with the standard rewrite rules.
    pub fn new() -> Parser {
        Parser {
            inner: PostgresCompatibilityParser::new(),
            rules: vec![
                Box::new(rules::AliasDuplicatedProjectionRewrite),
                Box::new(rules::ResolveUnqualifiedIdentifier),
                Box::new(rules::RewriteArrayAnyAllOperation),
                Box::new(rules::PrependUnqualifiedPgTableName),
                Box::new(rules::StripCallableQualifier),
                Box::new(rules::FixArrayLiteral),
                Box::new(rules::CurrentUserVariableToSessionUserFunctionCall),
                Box::new(rules::StripCollate),
                Box::new(rules::RewritePgCatalogOperator),
                Box::new(rules::RewriteRegCastToSubquery::new()),
                Box::new(rules::FixVersionColumnName),
            ],
        }
    }

    /// Split and parse a query string into statements.
    ///
    /// # Errors
    /// [`Error::Syntax`] with the parser's message.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, Error> {
        let sql = without_client_quirks(sql);
        let plain = SqlParser::parse_sql(&PostgreSqlDialect {}, &sql).map_err(|e| syntax(&e))?;
        if plain.iter().any(reads_catalog) {
            return self.inner.parse(&sql).map_err(|e| syntax(&e));
        }
        Ok(plain
            .into_iter()
            .map(|stmt| self.rules.iter().fold(stmt, |s, rule| rule.rewrite(s)))
            .collect())
    }
}

fn syntax(e: &ParserError) -> Error {
    let text = e.to_string();
    let text = text
        .strip_prefix("sql parser error: ")
        .unwrap_or(&text)
        .to_owned();
    Error::Syntax(format!("syntax error: {text}"))
}

/// Whether a statement names a table of `pg_catalog` or `information_schema` (qualified,
/// or unqualified `pg_*` as drivers write them).
fn reads_catalog(stmt: &Statement) -> bool {
    let found = visit_relations(stmt, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        let catalog = parts
            .iter()
            .any(|p| p == "pg_catalog" || p == "information_schema")
            || parts.last().is_some_and(|t| t.starts_with("pg_"));
        if catalog {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    found.is_break()
}

/// Fragments of catalog queries that well-known clients send and the engine cannot plan,
/// with an equivalent it can. Each names the client that sends it.
const CLIENT_QUIRKS: &[(&str, &str)] = &[
    // psql 15 `\d+`: storage options of the table and its TOAST table, built with an
    // `array(SELECT ...)` constructor. Datasets have neither, which PostgreSQL shows as ''.
    (
        "pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')",
        "''",
    ),
    // pgJDBC `DatabaseMetaData.getTypeInfo`: a correlated scalar subquery used as a
    // boolean, which the engine cannot plan; the EXISTS form selects the same types.
    (
        "(SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)",
        "EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')",
    ),
    // pgJDBC type cache: compares the `regproc` column `typinput` with a regproc literal;
    // the catalog stores regproc columns as the function's name.
    ("typinput='pg_catalog.array_in'::regproc", "typinput='array_in'"),
    // pgJDBC `getTables` REMARKS: an unqualified `'pg_class'::regclass`, which the
    // compatibility rewrite resolves in the current schema only; qualify it.
    ("d.classoid = 'pg_class'::regclass", "d.classoid = 'pg_catalog.pg_class'::regclass"),
];

/// Apply [`CLIENT_QUIRKS`]; only catalog queries are searched, so ordinary queries pay
/// one substring check.
fn without_client_quirks(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains("pg_catalog") {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = std::borrow::Cow::Borrowed(sql);
    for (from, to) in CLIENT_QUIRKS {
        if out.contains(from) {
            out = std::borrow::Cow::Owned(out.replace(from, to));
        }
    }
    out
}

/// A query's plan optimized with its parameters still placeholders, made at its first
/// execution and bound at every execution after.
#[derive(Debug, Clone)]
pub struct Generic {
    /// The optimized plan.
    pub plan: LogicalPlan,
    /// Whether the rollup rule took part (`SET biproxy.rollups` can change between
    /// executions; a statement run the other way is optimized anew).
    pub rollups: bool,
}

/// A statement ready to execute: classified, and for queries, planned.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The statement as parsed (for the audit log).
    pub sql: String,
    /// What the statement does.
    pub command: Command,
    /// The logical plan of a query, with `$n` placeholders still unbound.
    pub plan: Option<LogicalPlan>,
    /// The result column names clients see (PostgreSQL's naming).
    pub columns: Vec<String>,
    /// Parameter types inferred from the plan, by position (`$1` first).
    pub param_types: Vec<Option<DataType>>,
    /// The generic optimized plan, once the first execution made it; `None` inside when
    /// the plan cannot be reused (see [`Prepared::reusable`]).
    pub generic: std::sync::OnceLock<Option<Generic>>,
    /// The query as parsed, to plan it again when the datasets it reads are answered by
    /// other tables than when it was planned.
    pub statement: Option<Statement>,
    /// The workspace's dataset version it was planned at
    /// ([`crate::catalog::datasets::DatasetSchema::version`]).
    pub data_version: u64,
    /// The same statement planned at a later dataset version, once an execution needed it.
    pub replanned: Arc<std::sync::Mutex<Option<Arc<Prepared>>>>,
}

impl Prepared {
    /// Whether one optimized plan answers every execution: every parameter's type is
    /// known, and nothing in the plan reads the clock (the optimizer folds `now()` to the
    /// time it runs), a setting or a random number.
    pub fn reusable(&self) -> bool {
        let Some(plan) = &self.plan else {
            return false;
        };
        if self.param_types.iter().any(Option::is_none) {
            return false;
        }
        let mut immutable = true;
        let _ = plan.apply_with_subqueries(|node| {
            immutable &= node
                .expressions()
                .iter()
                .all(|e| !e.exists(|x| Ok(!computes_the_same(x))).unwrap_or(true));
            Ok(if immutable {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        immutable
    }
}

/// Whether an expression node gives the same value whenever and by whomever it is
/// evaluated (given the same inputs): not a stable or volatile function, not a variable.
pub fn computes_the_same(e: &Expr) -> bool {
    match e {
        Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::ScalarVariable(..) => false,
        _ => true,
    }
}

/// Classify and, for queries, plan one statement in a session's state.
///
/// # Errors
/// The classification or planning error, mapped to its SQLSTATE.
pub async fn prepare(
    state: &SessionState,
    datasets: &[crate::semantic::Dataset],
    stmt: Statement,
    data_version: u64,
) -> Result<Prepared, Error> {
    let sql = stmt.to_string();
    let statement = stmt.clone();
    let mut command = classify::classify(stmt)?;
    if let Command::Query(stmt) | Command::CopyOut { query: stmt, .. } = &mut command {
        crate::semantic::measure::expand(stmt, datasets)?;
    }
    let (Command::Query(stmt) | Command::CopyOut { query: stmt, .. }) = &command else {
        return Ok(Prepared {
            sql,
            columns: local_columns(&command),
            command,
            plan: None,
            param_types: Vec::new(),
            generic: std::sync::OnceLock::new(),
            statement: None,
            data_version,
            replanned: Arc::default(),
        });
    };
    let pg_names = names::pg_column_names(stmt);
    let plan = state
        .statement_to_plan(DfStatement::Statement(stmt.clone()))
        .await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|_| Error::ReadOnly(classify::command_tag(stmt)))?;
    let fields = plan.schema().fields();
    let columns = match pg_names {
        Some(n) if n.len() == fields.len() => n,
        _ => fields.iter().map(|f| f.name().clone()).collect(),
    };
    let param_types = param_types(&plan)?;
    Ok(Prepared {
        sql,
        command,
        plan: Some(plan),
        columns,
        param_types,
        generic: std::sync::OnceLock::new(),
        statement: Some(statement),
        data_version,
        replanned: Arc::default(),
    })
}

/// Column names of the results biproxy answers without the engine.
fn local_columns(command: &Command) -> Vec<String> {
    match command {
        Command::Show(None) => vec!["name".into(), "setting".into(), "description".into()],
        Command::Show(Some(name)) => {
            vec![crate::session::settings::Settings::canonical_name(name)]
        }
        _ => Vec::new(),
    }
}

/// `$1..$n` types in order; a gap (say `$2` unused) stays `None`.
fn param_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, Error> {
    let by_name: HashMap<String, Option<DataType>> = plan.get_parameter_types()?;
    let count = by_name
        .keys()
        .filter_map(|k| k.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()))
        .max()
        .unwrap_or(0);
    Ok((1..=count)
        .map(|i| by_name.get(&format!("${i}")).cloned().flatten())
        .collect())
}
