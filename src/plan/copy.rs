//! `COPY ... TO STDOUT`: how psql's `\copy`, and tools that export with COPY, read a
//! result. The table or query is planned exactly as a `SELECT` of it would be (so row
//! policies and masks apply); only the encoding of the rows differs.
//!
//! Supported: text (the default) and CSV, with `DELIMITER`, `NULL`, `HEADER` and `QUOTE`,
//! in the modern `WITH (...)` and the legacy `WITH CSV HEADER` spelling. COPY to a file or
//! program, and binary COPY, are refused: biproxy writes nothing on its host.

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Query, SelectItem, SetExpr, Statement,
};

use crate::error::Error;

/// How the rows of a COPY are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    /// CSV rather than PostgreSQL's text format.
    pub csv: bool,
    /// Between columns: tab for text, comma for CSV.
    pub delimiter: char,
    /// How NULL is written: `\N` for text, empty for CSV.
    pub null: String,
    /// A first line with the column names (CSV only, as in PostgreSQL).
    pub header: bool,
    /// CSV quote character.
    pub quote: char,
}

impl CopyFormat {
    fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            delimiter: '\t',
            null: "\\N".into(),
            header: false,
            quote: '"',
        }
    }

    fn set_csv(&mut self) {
        self.csv = true;
        self.delimiter = ',';
        self.null = String::new();
    }

    /// One line: the values (text-format renderings, `None` = NULL) with the line end.
    pub fn line<'a>(&self, values: impl IntoIterator<Item = Option<&'a str>>) -> String {
        let mut out = String::new();
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match v {
                None => out.push_str(&self.null),
                Some(v) if self.csv => self.push_csv(&mut out, v),
                Some(v) => self.push_text(&mut out, v),
            }
        }
        out.push('\n');
        out
    }

    fn push_text(&self, out: &mut String, v: &str) {
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c == self.delimiter => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }

    fn push_csv(&self, out: &mut String, v: &str) {
        let needs_quotes = v.is_empty() && self.null.is_empty()
            || v == self.null
            || v.contains([self.delimiter, self.quote, '\n', '\r']);
        if !needs_quotes {
            out.push_str(v);
            return;
        }
        out.push(self.quote);
        for c in v.chars() {
            if c == self.quote {
                out.push(self.quote);
            }
            out.push(c);
        }
        out.push(self.quote);
    }
}

/// The query a `COPY ... TO STDOUT` reads, and how to write its rows.
///
/// # Errors
/// 0A000 for a target other than STDOUT, binary format, or an option biproxy does not
/// implement.
pub fn copy_out(
    source: CopySource,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<(Statement, CopyFormat), Error> {
    if *target != CopyTarget::Stdout {
        return Err(Error::NotSupported(format!(
            "COPY TO {target} is not allowed: biproxy writes nothing on its host; use COPY ... TO STDOUT (psql: \\copy)"
        )));
    }
    let format = options_format(options, legacy)?;
    let query = match source {
        CopySource::Query(q) => q,
        CopySource::Table {
            table_name,
            columns,
        } => Box::new(select_from(&table_name, &columns)?),
    };
    Ok((Statement::Query(query), format))
}

fn options_format(
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyFormat, Error> {
    let mut f = CopyFormat::text();
    // The format decides the defaults, so it goes first whatever the order written.
    let is_csv = options
        .iter()
        .any(|o| matches!(o, CopyOption::Format(name) if name.value.eq_ignore_ascii_case("csv")))
        || legacy.iter().any(|o| matches!(o, CopyLegacyOption::Csv(_)));
    if is_csv {
        f.set_csv();
    }
    for o in options {
        match o {
            CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                "csv" | "text" => {}
                other => return Err(unsupported(&format!("FORMAT {other}"))),
            },
            CopyOption::Delimiter(c) => f.delimiter = *c,
            CopyOption::Null(s) => f.null.clone_from(s),
            CopyOption::Header(h) => f.header = *h,
            CopyOption::Quote(q) => f.quote = *q,
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(&other.to_string())),
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(csv) => {
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => f.header = true,
                        CopyLegacyCsvOption::Quote(q) => f.quote = *q,
                        other => return Err(unsupported(&other.to_string())),
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => f.delimiter = *c,
            CopyLegacyOption::Null(s) => f.null.clone_from(s),
            CopyLegacyOption::Header => f.header = true,
            other => return Err(unsupported(&other.to_string())),
        }
    }
    if f.header && !f.csv {
        return Err(Error::NotSupported(
            "COPY HEADER is available only in CSV mode".into(),
        ));
    }
    Ok(f)
}

fn unsupported(option: &str) -> Error {
    Error::NotSupported(format!("COPY option {option} is not supported by biproxy"))
}

/// `SELECT <columns or *> FROM <table>`, parsed so the table name resolves as in a query.
fn select_from(table: &ObjectName, columns: &[Ident]) -> Result<Query, Error> {
    let list = if columns.is_empty() {
        "*".to_owned()
    } else {
        columns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!("SELECT {list} FROM {table}");
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let mut stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql)
        .map_err(|e| Error::NotSupported(format!("COPY {table}: {e}")))?;
    match stmts.pop() {
        Some(Statement::Query(q)) if is_plain_select(&q) => Ok(*q),
        _ => Err(Error::NotSupported(format!("COPY {table}: not a table"))),
    }
}

fn is_plain_select(q: &Query) -> bool {
    matches!(&*q.body, SetExpr::Select(s) if !s.projection.is_empty()
        && s.projection.iter().all(|p| matches!(p, SelectItem::Wildcard(_) | SelectItem::UnnamedExpr(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Result<(String, CopyFormat), Error> {
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        let stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .unwrap()
            .pop()
            .unwrap();
        let Statement::Copy {
            source,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            panic!("not a COPY")
        };
        copy_out(source, &target, &options, &legacy_options).map(|(q, f)| (q.to_string(), f))
    }

    #[test]
    fn tables_and_queries_become_selects() {
        let (q, f) = parse("COPY sales (order_id, region) TO STDOUT").unwrap();
        assert_eq!(q, "SELECT order_id, region FROM sales");
        assert_eq!(f, CopyFormat::text());
        let (q, f) = parse("COPY (SELECT 1 AS a) TO STDOUT WITH (FORMAT csv, HEADER)").unwrap();
        assert_eq!(q, "SELECT 1 AS a");
        assert!(f.csv && f.header && f.delimiter == ',' && f.null.is_empty());
        let (_, f) = parse("COPY sales TO STDOUT WITH CSV HEADER").unwrap();
        assert!(f.csv && f.header);
        let (_, f) = parse("COPY sales TO STDOUT WITH (DELIMITER '|', NULL 'nil')").unwrap();
        assert!(!f.csv && f.delimiter == '|' && f.null == "nil");
    }

    #[test]
    fn files_programs_and_binary_are_refused() {
        for sql in [
            "COPY sales TO '/tmp/x.csv'",
            "COPY sales TO PROGRAM 'cat'",
            "COPY sales TO STDOUT WITH (FORMAT binary)",
            "COPY sales TO STDOUT WITH (HEADER)",
        ] {
            let err = parse(sql).unwrap_err();
            assert_eq!(err.sqlstate().0, "0A000", "{sql}: {err}");
        }
    }

    #[test]
    fn values_are_escaped_per_format() {
        let text = CopyFormat::text();
        assert_eq!(
            text.line([Some("a\tb"), None, Some("back\\slash\nnew")]),
            "a\\tb\t\\N\tback\\\\slash\\nnew\n"
        );
        let mut csv = CopyFormat::text();
        csv.set_csv();
        assert_eq!(
            csv.line([
                Some("plain"),
                Some("a,b"),
                Some("say \"hi\""),
                Some(""),
                None
            ]),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"\",\n"
        );
    }
}
