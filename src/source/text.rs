//! Rows that arrive as text, turned into Arrow batches of the types the plan expects.
//!
//! Both database connectors read results in their engine's text format (PostgreSQL's
//! simple query protocol, MySQL's text protocol). One conversion path serves every type:
//! a column is collected as strings and cast by Arrow's parser, which errors rather than
//! guessing on a value it cannot read (`safe: false`), so a bad value is never a silent
//! NULL. Binary columns are the exception: their bytes are kept as they are.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// Rows per batch: large enough to amortise the casts, small enough to stream.
pub const BATCH_ROWS: usize = 8192;

/// How an engine writes binary values in text results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryText {
    /// PostgreSQL `bytea_output = hex`: `\x0a0b`.
    Hex,
    /// MySQL's text protocol sends the raw bytes.
    Raw,
}

enum Column {
    Text(StringBuilder),
    Binary(BinaryBuilder),
}

/// Accumulates text rows into a batch of `schema`.
pub struct TextBatch {
    schema: SchemaRef,
    binary: BinaryText,
    columns: Vec<Column>,
    rows: usize,
}

impl TextBatch {
    /// An empty batch for `schema`.
    pub fn new(schema: SchemaRef, binary: BinaryText) -> TextBatch {
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Binary | DataType::LargeBinary => Column::Binary(BinaryBuilder::new()),
                _ => Column::Text(StringBuilder::new()),
            })
            .collect();
        TextBatch {
            schema,
            binary,
            columns,
            rows: 0,
        }
    }

    /// Append one row; `values` yields each column's text (`None` = NULL), in order.
    ///
    /// # Errors
    /// Text that is not UTF-8, or a malformed hex binary value.
    pub fn push<'a>(
        &mut self,
        mut values: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> Result<(), ArrowError> {
        for (i, column) in self.columns.iter_mut().enumerate() {
            let value = values.next().flatten();
            match (column, value) {
                (Column::Text(b), None) => b.append_null(),
                (Column::Binary(b), None) => b.append_null(),
                (Column::Text(b), Some(v)) => {
                    b.append_value(std::str::from_utf8(v).map_err(|_| {
                        ArrowError::ParseError(format!(
                            "column \"{}\" is not valid UTF-8 text",
                            self.schema.field(i).name()
                        ))
                    })?)
                }
                (Column::Binary(b), Some(v)) => match self.binary {
                    BinaryText::Raw => b.append_value(v),
                    BinaryText::Hex => b.append_value(decode_hex(v)?),
                },
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows collected so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was collected.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The collected rows as a batch of the schema's types; the builder starts over.
    ///
    /// # Errors
    /// A value the target type cannot represent (Arrow's cast error names it).
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (column, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            let array: ArrayRef = match column {
                Column::Text(b) => Arc::new(b.finish()),
                Column::Binary(b) => Arc::new(b.finish()),
            };
            let array = if array.data_type() == field.data_type() {
                array
            } else {
                cast_with_options(&array, field.data_type(), &options).map_err(|e| {
                    ArrowError::CastError(format!("column \"{}\": {e}", field.name()))
                })?
            };
            arrays.push(array);
        }
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
    }
}

/// `\x0aff` → bytes.
fn decode_hex(text: &[u8]) -> Result<Vec<u8>, ArrowError> {
    let bad = || ArrowError::ParseError("malformed hex bytea value".to_owned());
    let digits = text.strip_prefix(b"\\x").ok_or_else(bad)?;
    if digits.len() % 2 != 0 {
        return Err(bad());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(bad()),
    };
    digits
        .chunks(2)
        .map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};

    #[test]
    fn text_values_become_typed_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Decimal128(12, 2), true),
            Field::new("b", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("raw", DataType::Binary, true),
        ]));
        let mut batch = TextBatch::new(schema, BinaryText::Hex);
        let row: [Option<&[u8]>; 4] = [
            Some(b"1234567890.12"),
            Some(b"t"),
            Some(b"2024-03-01 10:00:00+08"),
            Some(b"\\x00ff"),
        ];
        batch.push(row.into_iter()).unwrap();
        batch.push([None, None, None, None].into_iter()).unwrap();
        let out = batch.finish().unwrap();
        assert_eq!(
            out.column(0)
                .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
                .value(0),
            123_456_789_012
        );
        assert!(out.column(1).as_boolean().value(0));
        let ts = out
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_709_258_400_000_000);
        assert_eq!(out.column(3).as_binary::<i32>().value(0), &[0u8, 255]);
        assert!((0..4).all(|c| out.column(c).is_null(1)));
    }

    #[test]
    fn an_unreadable_value_is_an_error_not_a_null() {
        let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int32, true)]));
        let mut batch = TextBatch::new(schema, BinaryText::Raw);
        batch.push([Some(&b"12x"[..])].into_iter()).unwrap();
        let err = batch.finish().unwrap_err().to_string();
        assert!(err.contains("column \"i\""), "{err}");
    }
}
