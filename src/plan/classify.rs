//! Sort each client statement into what biproxy does with it, before any engine sees it.
//!
//! Invariant: only [`Command::Query`] (and the query of [`Command::CopyOut`]) reaches
//! DataFusion. Session commands are answered
//! locally; writes and DDL are refused with 25006; anything else is refused with 0A000.
//! Raw client SQL is never handed to `SessionContext::sql`.

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Reset, ResetStatement, Set, Statement, Value,
};

use crate::error::Error;

/// What a statement asks biproxy to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// SELECT / WITH / VALUES / EXPLAIN: planned and run by the engine.
    Query(Box<Statement>),
    /// `SET name = value` (also `SET TIME ZONE`, `SET SESSION ...`).
    Set {
        /// Parameter name as written.
        name: String,
        /// Value as text, as PostgreSQL would store it.
        value: String,
    },
    /// `RESET name`; `None` = `RESET ALL`.
    Reset(Option<String>),
    /// `SHOW name`; `None` = `SHOW ALL`.
    Show(Option<String>),
    /// BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE: no-ops on a read-only gateway.
    Transaction(TransactionCommand),
    /// `DISCARD ALL` and friends: reset session state.
    Discard,
    /// `DEALLOCATE name` / `DEALLOCATE ALL`.
    Deallocate(Option<String>),
    /// Anything that would change data or schema.
    Write(String),
    /// `COPY <table or query> TO STDOUT`: the query, run as a query, written as COPY data.
    CopyOut {
        /// The `SELECT` that gives the rows.
        query: Box<Statement>,
        /// How to write them.
        format: super::copy::CopyFormat,
    },
}

/// The transaction statements a client may send; all succeed without effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionCommand {
    /// BEGIN / START TRANSACTION.
    Begin,
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT (also ROLLBACK TO SAVEPOINT).
    Rollback,
    /// SAVEPOINT name.
    Savepoint,
    /// RELEASE SAVEPOINT name.
    Release,
}

impl TransactionCommand {
    /// The command tag PostgreSQL answers with.
    pub fn tag(self) -> &'static str {
        match self {
            TransactionCommand::Begin => "BEGIN",
            TransactionCommand::Commit => "COMMIT",
            TransactionCommand::Rollback => "ROLLBACK",
            TransactionCommand::Savepoint => "SAVEPOINT",
            TransactionCommand::Release => "RELEASE",
        }
    }
}

/// Classify one parsed statement.
///
/// # Errors
/// [`Error::NotSupported`] for statements biproxy does not answer.
pub fn classify(stmt: Statement) -> Result<Command, Error> {
    Ok(match stmt {
        Statement::Query(_) => Command::Query(Box::new(stmt)),
        Statement::Explain { ref statement, .. } => {
            // EXPLAIN of a write is still a write attempt: refuse it the same way.
            if let Command::Write(tag) = classify((**statement).clone())? {
                return Ok(Command::Write(tag));
            }
            Command::Query(Box::new(stmt))
        }
        Statement::Set(set) => return classify_set(set),
        Statement::Reset(ResetStatement { reset }) => match reset {
            Reset::ALL => Command::Reset(None),
            Reset::ConfigurationParameter(name) => Command::Reset(Some(object_name(&name))),
        },
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(" ");
            match name.to_ascii_lowercase().as_str() {
                "all" => Command::Show(None),
                "time zone" => Command::Show(Some("TimeZone".into())),
                "transaction isolation level" => {
                    Command::Show(Some("transaction_isolation".into()))
                }
                _ => Command::Show(Some(name)),
            }
        }
        Statement::StartTransaction { .. } => Command::Transaction(TransactionCommand::Begin),
        Statement::Commit { .. } => Command::Transaction(TransactionCommand::Commit),
        Statement::Rollback { .. } => Command::Transaction(TransactionCommand::Rollback),
        Statement::Savepoint { .. } => Command::Transaction(TransactionCommand::Savepoint),
        Statement::ReleaseSavepoint { .. } => Command::Transaction(TransactionCommand::Release),
        Statement::Discard { .. } => Command::Discard,
        Statement::Deallocate { name, .. } => {
            if name.value.eq_ignore_ascii_case("all") && name.quote_style.is_none() {
                Command::Deallocate(None)
            } else {
                Command::Deallocate(Some(name.value))
            }
        }
        Statement::Copy { to: false, .. } => Command::Write("COPY FROM".into()),
        Statement::Copy {
            source,
            to: true,
            target,
            options,
            legacy_options,
            ..
        } => {
            let (query, format) =
                super::copy::copy_out(source, &target, &options, &legacy_options)?;
            Command::CopyOut {
                query: Box::new(query),
                format,
            }
        }
        other if is_write(&other) => Command::Write(command_tag(&other)),
        other => {
            return Err(Error::NotSupported(format!(
                "{} is not supported by biproxy",
                command_tag(&other)
            )))
        }
    })
}

fn classify_set(set: Set) -> Result<Command, Error> {
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => Ok(Command::Set {
            name: object_name(&variable),
            value: values.iter().map(set_value).collect::<Vec<_>>().join(", "),
        }),
        Set::SetTimeZone { value, .. } => Ok(Command::Set {
            name: "TimeZone".into(),
            value: set_value(&value),
        }),
        Set::SetNames { charset_name, .. } => Ok(Command::Set {
            name: "client_encoding".into(),
            value: charset_name.value,
        }),
        // Every transaction is read-only and sees one snapshot per statement; accept the
        // modes drivers send and keep reporting what is true.
        Set::SetTransaction { .. } => Ok(Command::Set {
            name: "transaction_isolation".into(),
            value: "read committed".into(),
        }),
        other => Err(Error::NotSupported(format!(
            "{} is not supported by biproxy",
            first_words(&other.to_string(), 2)
        ))),
    }
}

/// Render a SET value the way PostgreSQL stores it: string literals unquoted,
/// identifiers and numbers as written.
fn set_value(expr: &Expr) -> String {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .map_or_else(|| p.to_string(), |i| i.value.clone())
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn is_write(stmt: &Statement) -> bool {
    let tag = command_tag(stmt);
    let first = tag.split(' ').next().unwrap_or_default();
    matches!(
        first,
        "INSERT"
            | "UPDATE"
            | "DELETE"
            | "MERGE"
            | "TRUNCATE"
            | "CREATE"
            | "DROP"
            | "ALTER"
            | "GRANT"
            | "REVOKE"
            | "COMMENT"
            | "VACUUM"
            | "ANALYZE"
            | "REINDEX"
            | "CLUSTER"
            | "REFRESH"
            | "LOCK"
            | "RENAME"
            | "REPLACE"
            | "UPSERT"
            | "LOAD"
            | "UNLOAD"
            | "INSTALL"
            | "ATTACH"
            | "DETACH"
            | "CALL"
            | "DO"
    )
}

/// The command tag PostgreSQL would use, e.g. `INSERT`, `CREATE TABLE`, `DROP VIEW`.
pub fn command_tag(stmt: &Statement) -> String {
    let text = stmt.to_string();
    let words = match first_words(&text, 1).as_str() {
        "CREATE" | "DROP" | "ALTER" => 2,
        _ => 1,
    };
    let tag = first_words(&text, words);
    // `CREATE OR REPLACE VIEW` → `CREATE VIEW`, `CREATE UNIQUE INDEX` → `CREATE INDEX`.
    if tag == "CREATE OR" || tag == "CREATE UNIQUE" || tag == "CREATE TEMPORARY" {
        let last = text
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .find(|w| {
                matches!(
                    w.as_str(),
                    "TABLE" | "VIEW" | "INDEX" | "FUNCTION" | "SCHEMA"
                )
            })
            .unwrap_or_default();
        return format!("CREATE {last}").trim().to_owned();
    }
    tag
}

fn first_words(text: &str, n: usize) -> String {
    text.split_whitespace()
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn one(sql: &str) -> Result<Command, Error> {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        classify(stmts.remove(0))
    }

    #[test]
    fn writes_are_refused_with_their_tag() {
        for (sql, tag) in [
            ("INSERT INTO sales VALUES (1)", "INSERT"),
            ("UPDATE sales SET a = 1", "UPDATE"),
            ("DELETE FROM sales", "DELETE"),
            ("CREATE TABLE t (a int)", "CREATE TABLE"),
            ("DROP VIEW v", "DROP VIEW"),
            ("TRUNCATE sales", "TRUNCATE"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("COPY sales FROM STDIN", "COPY FROM"),
            ("EXPLAIN DELETE FROM sales", "DELETE"),
        ] {
            assert_eq!(one(sql).unwrap(), Command::Write(tag.into()), "{sql}");
        }
    }

    #[test]
    fn session_commands_are_recognised() {
        assert_eq!(
            one("SET extra_float_digits = 3").unwrap(),
            Command::Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            }
        );
        assert_eq!(
            one("SET SESSION TIME ZONE 'Asia/Shanghai'").unwrap(),
            Command::Set {
                name: "TimeZone".into(),
                value: "Asia/Shanghai".into()
            }
        );
        assert_eq!(
            one("SET application_name TO 'psql'").unwrap(),
            Command::Set {
                name: "application_name".into(),
                value: "psql".into()
            }
        );
        assert_eq!(one("SHOW ALL").unwrap(), Command::Show(None));
        assert_eq!(
            one("SHOW server_version").unwrap(),
            Command::Show(Some("server_version".into()))
        );
        assert_eq!(one("RESET ALL").unwrap(), Command::Reset(None));
        assert_eq!(
            one("BEGIN").unwrap(),
            Command::Transaction(TransactionCommand::Begin)
        );
        assert_eq!(
            one("ROLLBACK").unwrap(),
            Command::Transaction(TransactionCommand::Rollback)
        );
        assert_eq!(one("DEALLOCATE ALL").unwrap(), Command::Deallocate(None));
    }

    #[test]
    fn queries_go_to_the_engine() {
        assert!(matches!(one("SELECT 1").unwrap(), Command::Query(_)));
        assert!(matches!(
            one("WITH x AS (SELECT 1) SELECT * FROM x").unwrap(),
            Command::Query(_)
        ));
        assert!(matches!(
            one("EXPLAIN SELECT 1").unwrap(),
            Command::Query(_)
        ));
    }
}
