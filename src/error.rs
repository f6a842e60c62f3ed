//! The crate error, its SQLSTATE, and the single mapping to a PostgreSQL `ErrorResponse`.
//!
//! Every error a client can see passes through [`Error::sqlstate`] exactly once, so a
//! SQLSTATE is decided in one place and never guessed from message text downstream.

use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};

/// A PostgreSQL SQLSTATE code, as sent in the `C` field of an `ErrorResponse`.
///
/// Named constants keep the codes readable at the call site; the values are those of the
/// PostgreSQL documentation, Appendix A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState(pub &'static str);

impl SqlState {
    /// `42601`: the SQL text does not parse.
    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    /// `42P01`: a relation (dataset) that does not exist or is not visible.
    pub const UNDEFINED_TABLE: SqlState = SqlState("42P01");
    /// `42703`: a column that does not exist.
    pub const UNDEFINED_COLUMN: SqlState = SqlState("42703");
    /// `42883`: a function that does not exist.
    pub const UNDEFINED_FUNCTION: SqlState = SqlState("42883");
    /// `42702`: a name that more than one relation of the query defines.
    pub const AMBIGUOUS_COLUMN: SqlState = SqlState("42702");
    /// `42704`: an unknown object such as a configuration parameter.
    pub const UNDEFINED_OBJECT: SqlState = SqlState("42704");
    /// `42804`: an expression of the wrong type.
    pub const DATATYPE_MISMATCH: SqlState = SqlState("42804");
    /// `42501`: the identity may not do this.
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
    /// `0A000`: valid SQL that biproxy does not support.
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    /// `25006`: a write on a read-only gateway.
    pub const READ_ONLY_SQL_TRANSACTION: SqlState = SqlState("25006");
    /// `28P01`: wrong password.
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    /// `28000`: the authorization itself is refused (e.g. TLS required).
    pub const INVALID_AUTHORIZATION: SqlState = SqlState("28000");
    /// `3D000`: unknown database, which for biproxy means unknown workspace.
    pub const INVALID_CATALOG_NAME: SqlState = SqlState("3D000");
    /// `57014`: the query was cancelled by the client or by `statement_timeout`.
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    /// `08P01`: the client broke the wire protocol.
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    /// `22023`: a parameter value that cannot be used.
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    /// `22012`: division by zero.
    pub const DIVISION_BY_ZERO: SqlState = SqlState("22012");
    /// `22P02`: text that does not convert to the requested type.
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState("22P02");
    /// `26000`: a prepared statement name that does not exist.
    pub const INVALID_SQL_STATEMENT_NAME: SqlState = SqlState("26000");
    /// `08001`: a source cannot be reached.
    pub const CANNOT_CONNECT: SqlState = SqlState("08001");
    /// `53300`: too many connections.
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    /// `XX000`: a bug or an unexpected failure inside biproxy.
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
}

/// Errors a client can receive. Each variant maps to exactly one SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A dataset or relation the session cannot see.
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// A column that does not exist in the relations of the query.
    #[error("{0}")]
    UndefinedColumn(String),
    /// A function that does not exist.
    #[error("{0}")]
    UndefinedFunction(String),
    /// A name more than one relation of the query defines.
    #[error("{0}")]
    AmbiguousColumn(String),
    /// An unknown configuration parameter in SET/SHOW.
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    /// A value that does not fit a setting or parameter.
    #[error("{0}")]
    InvalidValue(String),
    /// A type error in the query.
    #[error("{0}")]
    TypeMismatch(String),
    /// A write or DDL statement.
    #[error("cannot execute {0}: biproxy is a read-only gateway; datasets are changed in its config files")]
    ReadOnly(String),
    /// Valid SQL that biproxy does not answer.
    #[error("{0}")]
    NotSupported(String),
    /// Permission denied.
    #[error("{0}")]
    PermissionDenied(String),
    /// A prepared statement that does not exist.
    #[error("prepared statement \"{0}\" does not exist")]
    UnknownStatement(String),
    /// The client cancelled the query.
    #[error("canceling statement due to user request")]
    Canceled,
    /// `statement_timeout` expired.
    #[error("canceling statement due to statement timeout")]
    Timeout,
    /// Division by zero during execution.
    #[error("division by zero")]
    DivisionByZero,
    /// Anything else raised by the query engine while planning or executing.
    #[error("{0}")]
    Engine(String),
    /// A source failed; the SQLSTATE is the one the source error carries.
    #[error("{message}")]
    Source {
        /// What the client receives.
        sqlstate: SqlState,
        /// The source's name and the reason.
        message: String,
    },
    /// A failure that is our bug, not the user's mistake.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The SQLSTATE sent to the client for this error.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::Syntax(_) => SqlState::SYNTAX_ERROR,
            Error::UndefinedTable(_) => SqlState::UNDEFINED_TABLE,
            Error::UndefinedColumn(_) => SqlState::UNDEFINED_COLUMN,
            Error::UndefinedFunction(_) => SqlState::UNDEFINED_FUNCTION,
            Error::AmbiguousColumn(_) => SqlState::AMBIGUOUS_COLUMN,
            Error::UnknownSetting(_) => SqlState::UNDEFINED_OBJECT,
            Error::InvalidValue(_) => SqlState::INVALID_PARAMETER_VALUE,
            Error::TypeMismatch(_) => SqlState::DATATYPE_MISMATCH,
            Error::ReadOnly(_) => SqlState::READ_ONLY_SQL_TRANSACTION,
            Error::NotSupported(_) => SqlState::FEATURE_NOT_SUPPORTED,
            Error::PermissionDenied(_) => SqlState::INSUFFICIENT_PRIVILEGE,
            Error::UnknownStatement(_) => SqlState::INVALID_SQL_STATEMENT_NAME,
            Error::Canceled | Error::Timeout => SqlState::QUERY_CANCELED,
            Error::DivisionByZero => SqlState::DIVISION_BY_ZERO,
            Error::Engine(_) => SqlState::INTERNAL_ERROR,
            Error::Source { sqlstate, .. } => *sqlstate,
            Error::Internal(_) => SqlState::INTERNAL_ERROR,
        }
    }

    /// Classify a DataFusion error into the variant a client should see.
    ///
    /// DataFusion reports "table not found" and "column not found" as planning errors
    /// with structured variants where it can; those are mapped by kind. The remaining
    /// plan errors are the user's SQL (wrong types, unknown functions).
    pub fn from_datafusion(err: &DataFusionError) -> Error {
        use datafusion::arrow::error::ArrowError;
        use datafusion::sql::sqlparser::parser::ParserError;
        if let Some(e) = source_error(err) {
            return Error::Source {
                sqlstate: e.sqlstate(),
                message: e.to_string(),
            };
        }
        match err.find_root() {
            DataFusionError::SQL(e, _) => match e.as_ref() {
                ParserError::ParserError(m) | ParserError::TokenizerError(m) => {
                    Error::Syntax(m.clone())
                }
                ParserError::RecursionLimitExceeded => {
                    Error::Syntax("statement is nested too deeply".into())
                }
            },
            DataFusionError::SchemaError(e, _) => schema_error(e),
            DataFusionError::Plan(m) => plan_error(m.clone()),
            DataFusionError::NotImplemented(m) => Error::NotSupported(m.clone()),
            DataFusionError::ArrowError(e, _) => match e.as_ref() {
                ArrowError::DivideByZero => Error::DivisionByZero,
                ArrowError::CastError(m) | ArrowError::ParseError(m) => {
                    Error::InvalidValue(m.clone())
                }
                other => Error::Engine(other.to_string()),
            },
            DataFusionError::Execution(m) => Error::Engine(m.clone()),
            other => Error::Engine(other.strip_backtrace()),
        }
    }

    /// Convert into the pgwire error that carries it to the client.
    pub fn into_pgwire(self) -> PgWireError {
        PgWireError::UserError(Box::new(self.error_info()))
    }

    /// The `ErrorResponse` fields for this error.
    pub fn error_info(&self) -> ErrorInfo {
        ErrorInfo::new(
            "ERROR".to_owned(),
            self.sqlstate().0.to_owned(),
            self.to_string(),
        )
    }
}

impl From<DataFusionError> for Error {
    fn from(err: DataFusionError) -> Self {
        Error::from_datafusion(&err)
    }
}

impl From<Error> for PgWireError {
    fn from(err: Error) -> Self {
        err.into_pgwire()
    }
}

/// The source failure behind `err`, however DataFusion wrapped it.
fn source_error(err: &DataFusionError) -> Option<&crate::source::SourceError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<crate::source::SourceError>() {
            return Some(found);
        }
        if let Some(DataFusionError::External(inner)) = e.downcast_ref::<DataFusionError>() {
            cause = Some(inner.as_ref());
            continue;
        }
        cause = e.source();
    }
    None
}

fn schema_error(err: &datafusion::common::SchemaError) -> Error {
    use datafusion::common::SchemaError;
    match err {
        SchemaError::FieldNotFound { field, .. } => {
            Error::UndefinedColumn(format!("column \"{}\" does not exist", field.name()))
        }
        other => Error::Engine(other.to_string()),
    }
}

/// DataFusion reports unknown tables and functions as plain plan errors; recognise them
/// by the fixed phrases DataFusion uses, and keep the rest as plan errors of the query.
fn plan_error(message: String) -> Error {
    if let Some(rest) = message.strip_prefix("table '") {
        let name = rest.trim_end_matches("' not found");
        let short = name.rsplit('.').next().unwrap_or(name);
        return Error::UndefinedTable(short.to_owned());
    }
    if message.starts_with("Invalid function") || message.contains("function does not exist") {
        return Error::UndefinedFunction(message);
    }
    if message.contains("No function matches") || message.contains("Cannot infer common") {
        return Error::TypeMismatch(message);
    }
    Error::Engine(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_table_maps_to_42p01_with_postgres_wording() {
        let err = Error::from_datafusion(&DataFusionError::Plan(
            "table 'demo.public.nope' not found".into(),
        ));
        assert_eq!(err.sqlstate(), SqlState::UNDEFINED_TABLE);
        assert_eq!(err.to_string(), "relation \"nope\" does not exist");
    }

    #[test]
    fn read_only_names_the_statement() {
        let err = Error::ReadOnly("INSERT".into());
        assert_eq!(err.sqlstate().0, "25006");
        assert!(err.to_string().starts_with("cannot execute INSERT"));
    }
}
