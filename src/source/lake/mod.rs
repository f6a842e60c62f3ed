//! The `lake` source: a directory of Parquet tables, read in-process by DataFusion.
//!
//! Each subdirectory (or `.parquet` file) of the source's path is one table, named after
//! it, read in-process by DataFusion.

pub mod demo;

use std::path::{Path, PathBuf};

use datafusion::execution::options::ParquetReadOptions;
use datafusion::prelude::SessionContext;

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

/// Register every table found under `dir` in `ctx`; returns their names, sorted.
///
/// # Errors
/// [`LakeError`] naming the directory or table that failed.
pub async fn open(dir: &Path, ctx: &SessionContext) -> Result<Vec<String>, LakeError> {
    let mut tables = Vec::new();
    for (name, path) in table_paths(dir)? {
        let url = path.to_string_lossy().into_owned();
        ctx.register_parquet(name.as_str(), &url, ParquetReadOptions::default())
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

/// Subdirectories holding Parquet files, and loose `.parquet` files, as (name, path).
/// Directories whose names start with `_` or `.` are skipped (markers, temporary output).
fn table_paths(dir: &Path) -> Result<Vec<(String, PathBuf)>, LakeError> {
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
            let mut url = path.to_string_lossy().into_owned();
            url.push('/');
            out.push((name.to_lowercase(), PathBuf::from(url)));
        } else if let Some(stem) = name.strip_suffix(".parquet") {
            out.push((stem.to_lowercase(), path.clone()));
        }
    }
    Ok(out)
}
