//! Dimensions: columns with a meaning tools can use. A time dimension is offered at its
//! granularities as columns of their own (`order_date_month`), computed like calculated
//! fields; a geo dimension carries its role; hierarchies order dimensions for drilling.

use datafusion::arrow::datatypes::{DataType, Schema};

use super::quote_ident;
use crate::config::{
    ConfigError, DatasetConfig, DimensionConfig, DimensionKind, FieldConfig, Granularity,
};

/// The calculated fields that give each time dimension its granularity columns, named
/// `<dimension>_<granularity>`: dates stay dates, timestamps stay timestamps.
///
/// # Errors
/// A time dimension on a missing column, on a column that is not a date or timestamp, or
/// asking for hours of a date.
pub fn granularity_fields(
    d: &DatasetConfig,
    schema: &Schema,
) -> Result<Vec<FieldConfig>, ConfigError> {
    let mut out = Vec::new();
    for dim in &d.dimensions {
        let DimensionKind::Time(granularities) = &dim.kind else {
            continue;
        };
        let err = |m: String| {
            ConfigError::at(
                &dim.origin,
                format!("dataset \"{}\".dimension \"{}\"", d.name, dim.name),
                m,
            )
        };
        let field = schema.field_with_name(&dim.name).map_err(|_| {
            err(format!(
                "dataset \"{}\" has no column \"{}\"",
                d.name, dim.name
            ))
        })?;
        let is_date = match field.data_type() {
            DataType::Date32 | DataType::Date64 => true,
            DataType::Timestamp(..) => false,
            other => {
                return Err(err(format!(
                    "a time dimension must be a date or timestamp, not {other}"
                )))
            }
        };
        let defaulted: Vec<Granularity> = Granularity::ALL
            .into_iter()
            .filter(|g| !(is_date && *g == Granularity::Hour))
            .collect();
        let granularities = if granularities.is_empty() {
            &defaulted
        } else {
            granularities
        };
        for g in granularities {
            if is_date && *g == Granularity::Hour {
                return Err(err("`hour` needs a timestamp; this column is a date".into()));
            }
            out.push(granularity_field(dim, *g, is_date));
        }
    }
    Ok(out)
}

fn granularity_field(dim: &DimensionConfig, g: Granularity, is_date: bool) -> FieldConfig {
    let truncated = format!("date_trunc('{}', {})", g.name(), quote_ident(&dim.name));
    FieldConfig {
        name: format!("{}_{}", dim.name, g.name()),
        expr: if is_date {
            format!("CAST({truncated} AS DATE)")
        } else {
            truncated
        },
        description: format!("{} truncated to the {}", dim.name, g.name()),
        label: if dim.label.is_empty() {
            String::new()
        } else {
            format!("{} ({})", dim.label, g.name())
        },
        origin: dim.origin.clone(),
    }
}

/// Every plain or geo dimension must name a column of the dataset.
pub fn check(d: &DatasetConfig, schema: &Schema) -> Vec<ConfigError> {
    d.dimensions
        .iter()
        .filter(|dim| !matches!(dim.kind, DimensionKind::Time(_)))
        .filter(|dim| schema.field_with_name(&dim.name).is_err())
        .map(|dim| {
            ConfigError::at(
                &dim.origin,
                format!("dataset \"{}\".dimension \"{}\"", d.name, dim.name),
                format!("dataset \"{}\" has no column \"{}\"", d.name, dim.name),
            )
        })
        .collect()
}

/// How `biproxy.dimensions` shows a dimension's type details: (type, granularities, geo
/// role). The granularities are those whose columns the dataset has.
pub fn describe(
    dim: &DimensionConfig,
    fields: &[FieldConfig],
) -> (&'static str, String, &'static str) {
    match &dim.kind {
        DimensionKind::Plain => ("plain", String::new(), ""),
        DimensionKind::Time(_) => {
            let offered: Vec<&str> = Granularity::ALL
                .into_iter()
                .map(Granularity::name)
                .filter(|g| fields.iter().any(|f| f.name == format!("{}_{g}", dim.name)))
                .collect();
            ("time", offered.join(","), "")
        }
        DimensionKind::Geo(role) => ("geo", String::new(), role.name()),
    }
}
