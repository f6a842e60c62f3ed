//! From session outcomes to protocol responses: Arrow batches become `DataRow`s in the
//! text or binary format each column asked for (via `arrow-pg`).

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;

use crate::error::Error;
use crate::plan::Prepared;
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
