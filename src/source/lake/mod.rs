//! The `lake` source: a directory of Parquet and CSV tables, read in-process by DataFusion —
//! the columnar warehouse of a deployment without one.
//!
//! Each subdirectory (or `.parquet` / `.csv` file) of the source's path is one table, named
//! after it. A directory's format is that of the first data file found in it; CSV files
//! have a header row. Hive-style subdirectories (`dt=2024-01-01/region=East/part-0.parquet`)
//! become text columns of the table (`dt`, `region`), and a filter on them skips the other
//! directories' files without reading them (partition pruning).

pub mod demo;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTableUrl};
use datafusion::error::Result as DfResult;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::prelude::{CsvReadOptions, SessionContext};

/// Why a lake could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The directory is missing or unreadable.
    #[error("cannot read lake directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A table's files could not be registered (unreadable Parquet, bad schema).
    #[error("cannot open table \"{table}\" in {path}: {source}")]
    Table {
        /// Table name.
        table: String,
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// The demo data could not be generated.
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
}

/// The file formats a lake table can be made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
}

impl Format {
    fn of(file: &Path) -> Option<Format> {
        match file.extension()?.to_str()? {
            "parquet" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => ".parquet",
            Format::Csv => ".csv",
        }
    }

    fn file_format(self) -> Arc<dyn FileFormat> {
        match self {
            Format::Parquet => Arc::new(ParquetFormat::default()),
            Format::Csv => Arc::new(CsvFormat::default().with_has_header(true)),
        }
    }
}

/// Register every table found under `dir` in `ctx`; returns their names, sorted.
///
/// # Errors
/// [`LakeError`] naming the directory or table that failed.
pub async fn open(dir: &Path, ctx: &SessionContext) -> Result<Vec<String>, LakeError> {
    let mut tables = Vec::new();
    for (name, path, format) in table_paths(dir)? {
        let url = path.to_string_lossy().into_owned();
        register(ctx, &name, &url, format)
            .await
            .map_err(|e| LakeError::Table {
                table: name.clone(),
                path: path.clone(),
                source: Box::new(e),
            })?;
        tables.push(name);
    }
    tables.sort();
    Ok(tables)
}

/// Register one table, with its hive partition columns as text.
async fn register(ctx: &SessionContext, name: &str, url: &str, format: Format) -> DfResult<()> {
    let options = ListingOptions::new(format.file_format()).with_file_extension(format.extension());
    let partitions: Vec<(String, DataType)> = options
        .infer_partitions(&ctx.state(), &ListingTableUrl::parse(url)?)
        .await?
        .into_iter()
        .map(|column| (column, DataType::Utf8))
        .collect();
    match format {
        Format::Parquet => {
            let read = ParquetReadOptions::default().table_partition_cols(partitions);
            ctx.register_parquet(name, url, read).await
        }
        Format::Csv => {
            let read = CsvReadOptions::new()
                .has_header(true)
                .file_extension(format.extension())
                .table_partition_cols(partitions);
            ctx.register_csv(name, url, read).await
        }
    }
}

/// Subdirectories holding data files, and loose data files, as (name, path, format).
/// Entries whose names start with `_` or `.` are skipped (markers, temporary output), and
/// so are directories without a data file.
fn table_paths(dir: &Path) -> Result<Vec<(String, PathBuf, Format)>, LakeError> {
    let io = |source| LakeError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            let Some(format) = first_format(&path) else {
                continue;
            };
            let mut url = path.to_string_lossy().into_owned();
            url.push('/');
            out.push((name.to_lowercase(), PathBuf::from(url), format));
        } else if let Some(format) = Format::of(&path) {
            let stem = &name[..name.len() - format.extension().len()];
            out.push((stem.to_lowercase(), path.clone(), format));
        }
    }
    Ok(out)
}

/// The format of the first data file under `dir` (depth first, in name order).
fn first_format(dir: &Path) -> Option<Format> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('_') && !n.starts_with('.'))
        })
        .collect();
    entries.sort();
    entries.iter().find_map(|p| {
        if p.is_dir() {
            first_format(p)
        } else {
            Format::of(p)
        }
    })
}
