//! From session outcomes to protocol responses: Arrow batches become `DataRow`s in the
//! text or binary format each column asked for (via `arrow-pg`), or COPY data lines.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;

use crate::error::Error;
use crate::plan::copy::CopyFormat;
use crate::plan::{Command, Prepared};
use crate::session::Outcome;

/// Describe result columns: PostgreSQL names, PostgreSQL types, the requested formats.
///
/// # Errors
/// 0A000 for an Arrow type with no PostgreSQL equivalent.
pub fn fields(
    schema: &Schema,
    columns: &[String],
    format: &Format,
) -> Result<Vec<FieldInfo>, Error> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let pg_type = arrow_pg::datatypes::field_into_pg_type(f)
                .map_err(|e| Error::NotSupported(e.to_string()))?;
            let name = columns.get(i).cloned().unwrap_or_else(|| f.name().clone());
            Ok(FieldInfo::new(
                name,
                None,
                None,
                pg_type,
                format.format_for(i),
            ))
        })
        .collect()
}

/// The row description of a prepared statement, for Describe.
///
/// # Errors
/// As [`fields`].
pub fn describe(prepared: &Prepared, format: &Format) -> Result<Vec<FieldInfo>, Error> {
    // COPY sends its rows as COPY data, not DataRows: no row description, as in PostgreSQL.
    if matches!(prepared.command, Command::CopyOut { .. }) {
        return Ok(Vec::new());
    }
    match &prepared.plan {
        Some(plan) => fields(plan.schema().as_arrow(), &prepared.columns, format),
        None if prepared.columns.is_empty() => Ok(Vec::new()),
        None => {
            let schema = Schema::new(
                prepared
                    .columns
                    .iter()
                    .map(|c| {
                        datafusion::arrow::datatypes::Field::new(
                            c,
                            datafusion::arrow::datatypes::DataType::Utf8,
                            false,
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            fields(&schema, &prepared.columns, format)
        }
    }
}

/// The response to `command`: COPY data for `COPY ... TO STDOUT`, else [`response`].
///
/// # Errors
/// As [`fields`].
pub fn respond(command: &Command, outcome: Outcome, format: &Format) -> Result<Response, Error> {
    match (command, outcome) {
        (
            Command::CopyOut { format: copy, .. },
            Outcome::Rows {
                schema,
                columns,
                batches,
            },
        ) => copy_out(&schema, &columns, batches, copy),
        (_, outcome) => response(outcome, format),
    }
}

/// Rows as COPY data: each row is encoded as a text-format `DataRow` (so values read as
/// PostgreSQL prints them), then written as one line of the COPY format.
fn copy_out(
    schema: &Schema,
    columns: &[String],
    batches: crate::session::BatchStream,
    copy: &CopyFormat,
) -> Result<Response, Error> {
    let fields = Arc::new(fields(schema, columns, &Format::UnifiedText)?);
    let header = copy
        .header
        .then(|| Ok(line(copy, columns.iter().map(|c| Some(c.as_bytes())))));
    let copy = copy.clone();
    let row_fields = Arc::clone(&fields);
    let lines = batches.flat_map(move |batch| {
        let lines: Vec<PgWireResult<CopyData>> = match batch {
            Ok(batch) => arrow_pg::datatypes::encode_recordbatch(Arc::clone(&row_fields), batch)
                .map(|row| row.map(|row| line(&copy, row_values(&row))))
                .collect(),
            Err(e) => vec![Err(e.into_pgwire())],
        };
        futures::stream::iter(lines)
    });
    let data = futures::stream::iter(header).chain(lines);
    Ok(Response::CopyOut(CopyResponse::new(0, fields.len(), data)))
}

fn line<'a>(copy: &CopyFormat, values: impl Iterator<Item = Option<&'a [u8]>>) -> CopyData {
    let text: Vec<Option<std::borrow::Cow<'a, str>>> =
        values.map(|v| v.map(String::from_utf8_lossy)).collect();
    let line = copy.line(text.iter().map(|v| v.as_deref()));
    CopyData::new(bytes::Bytes::from(line))
}

/// The values of a text-format `DataRow`: a length (-1 = NULL) before each.
fn row_values(row: &DataRow) -> impl Iterator<Item = Option<&[u8]>> {
    let mut rest: &[u8] = &row.data;
    (0..row.field_count).map(move |_| {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        let Ok(len) = usize::try_from(len) else {
            rest = tail;
            return None;
        };
        let (value, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        Some(value)
    })
}

/// Turn an outcome into the response pgwire sends.
///
/// # Errors
/// As [`fields`].
pub fn response(outcome: Outcome, format: &Format) -> Result<Response, Error> {
    match outcome {
        Outcome::Rows {
            schema,
            columns,
            batches,
        } => {
            let fields = Arc::new(fields(&schema, &columns, format)?);
            let row_fields = Arc::clone(&fields);
            let rows = batches.flat_map(move |batch| {
                let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                    Ok(batch) => {
                        arrow_pg::datatypes::encode_recordbatch(Arc::clone(&row_fields), batch)
                    }
                    Err(e) => Box::new(std::iter::once(Err(e.into_pgwire()))),
                };
                futures::stream::iter(rows)
            });
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
        Outcome::Done(tag) => Ok(Response::Execution(Tag::new(&tag))),
        Outcome::Transaction(t) => {
            use crate::plan::TransactionCommand as T;
            let tag = Tag::new(t.tag());
            Ok(match t {
                T::Begin => Response::TransactionStart(tag),
                T::Commit | T::Rollback => Response::TransactionEnd(tag),
                T::Savepoint | T::Release => Response::Execution(tag),
            })
        }
    }
}
