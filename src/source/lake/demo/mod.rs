//! The embedded demo data: a small retail star schema written as Parquet files.
//!
//! A gateway that cannot be tried without first wiring up a database rarely gets tried, so on
//! first start the lake source calls [`ensure`], which writes a reproducible (fixed-seed) data
//! set of orders, customers, products and stores under the data directory. The semantic layer,
//! the wire protocol and BI tools then have something real to query: Chinese geography
//! exercises UTF-8 end to end, and the nullable `discount` column exercises NULL handling.
//!
//! Orders are streamed batch by batch into size-bounded files, so memory stays flat even for
//! 100 million orders. Everything is written into a temporary sibling directory that is renamed
//! into place only when complete, and the marker file `_demo.json` is written last, so a crash
//! never leaves a half-written directory that looks finished.

mod data;

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use tracing::{info, warn};

use data::{
    catalog, categories_batch, customers_batch, products_batch, stores_batch, OrderGen, Product,
};

/// Options for generating the demo data.
///
/// Exists so tests and small machines can ask for fewer orders, and so the marker file can
/// tell whether the data on disk was generated with the options now requested.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// Number of rows in the `orders` fact table (1..=100,000,000).
    pub orders: u64,
    /// Seed of the random generators; the same spec always yields the same values.
    pub seed: u64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        Self {
            orders: 1_000_000,
            seed: 20240101,
        }
    }
}

/// Why the demo data could not be ensured; each variant names what failed so startup errors
/// point at the directory or the encoding step that broke.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A filesystem operation (create, remove, rename, write) failed.
    #[error("cannot write demo data in {path}: {source}")]
    Io {
        /// The file or directory being touched.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet encoder failed.
    #[error("cannot encode demo data for {path}: {source}")]
    Parquet {
        /// The Parquet file being written.
        path: PathBuf,
        /// The underlying Parquet error.
        #[source]
        source: ParquetError,
    },
    /// Building an Arrow array or record batch failed.
    #[error("cannot build demo data: {0}")]
    Arrow(#[from] ArrowError),
    /// The requested order count is outside the supported range.
    #[error("demo order count must be between 1 and 100000000, got {0}")]
    BadCount(u64),
}

/// What `ensure` did, so the caller can log whether startup paid for generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoOutcome {
    /// The marker matched the spec; nothing was written.
    AlreadyPresent,
    /// The data was (re)generated with this many orders.
    Generated {
        /// Number of orders written.
        orders: u64,
    },
}

/// The table names, each a subdirectory of `dir` holding one or more `.parquet` files; the
/// lake source registers exactly these as the demo catalog's tables.
pub const TABLES: [&str; 5] = ["orders", "customers", "products", "stores", "categories"];

const MAX_ORDERS: u64 = 100_000_000;
const ORDERS_PER_FILE: u64 = 5_000_000;
const BATCH_ROWS: u64 = 131_072;
const ROW_GROUP_ROWS: usize = 1_000_000;
const MARKER: &str = "_demo.json";
const FORMAT_VERSION: u64 = 2;
/// Ensure the demo tables exist under `dir`; generate them if the marker file is missing.
///
/// Exists so the gateway is usable out of the box: it is cheap when the data is already
/// there (one small file read) and regenerates when the marker is absent or was written
/// for a different spec.
pub fn ensure(dir: &Path, spec: &DemoSpec) -> Result<DemoOutcome, DemoError> {
    if !(1..=MAX_ORDERS).contains(&spec.orders) {
        return Err(DemoError::BadCount(spec.orders));
    }
    // Normalise away a trailing slash so the temporary sibling really is a sibling.
    let dir: PathBuf = dir.components().collect();
    let marker = dir.join(MARKER);
    match fs::read_to_string(&marker) {
        Ok(text) if marker_matches(&text, spec) => return Ok(DemoOutcome::AlreadyPresent),
        Ok(_) => {
            warn!(dir = %dir.display(), "demo data has other options; regenerating");
            remove_dir(&dir)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if dir.exists() {
                warn!(dir = %dir.display(), "demo directory has no marker; regenerating");
                remove_dir(&dir)?;
            }
        }
        Err(e) => return Err(io_err(&marker, e)),
    }
    generate(&dir, spec)?;
    Ok(DemoOutcome::Generated {
        orders: spec.orders,
    })
}

fn generate(dir: &Path, spec: &DemoSpec) -> Result<(), DemoError> {
    let start = Instant::now();
    info!(orders = spec.orders, dir = %dir.display(), "generating demo data");
    let mut tmp_name = dir.as_os_str().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    remove_dir(&tmp)?;
    let written = write_tables(&tmp, spec);
    if written.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    written?;
    fs::rename(&tmp, dir).map_err(|e| io_err(dir, e))?;
    let marker = dir.join(MARKER);
    fs::write(&marker, marker_text(spec)).map_err(|e| io_err(&marker, e))?;
    let elapsed_secs = start.elapsed().as_secs_f64();
    info!(orders = spec.orders, elapsed_secs, "demo data generated");
    Ok(())
}

fn write_tables(tmp: &Path, spec: &DemoSpec) -> Result<(), DemoError> {
    let customers = spec.orders.clamp(100, 10_000) as i64;
    let products = catalog(spec.seed);
    write_table(tmp, "customers", &customers_batch(spec.seed, customers)?)?;
    write_table(tmp, "products", &products_batch(&products)?)?;
    write_table(tmp, "stores", &stores_batch(spec.seed)?)?;
    write_table(tmp, "categories", &categories_batch()?)?;
    write_orders(&tmp.join("orders"), spec, &products, customers)
}

fn marker_text(spec: &DemoSpec) -> String {
    let (orders, seed) = (spec.orders, spec.seed);
    format!("{{\"orders\": {orders}, \"seed\": {seed}, \"version\": {FORMAT_VERSION}}}\n")
}

fn marker_matches(text: &str, spec: &DemoSpec) -> bool {
    marker_field(text, "orders") == Some(spec.orders)
        && marker_field(text, "seed") == Some(spec.seed)
        && marker_field(text, "version") == Some(FORMAT_VERSION)
}

/// Reads `"key": <digits>` from the hand-written marker JSON.
fn marker_field(text: &str, key: &str) -> Option<u64> {
    let needle = format!("\"{key}\"");
    let start = text.find(&needle)? + needle.len();
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn io_err(path: &Path, source: std::io::Error) -> DemoError {
    DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parquet_err(path: &Path, source: ParquetError) -> DemoError {
    DemoError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn remove_dir(path: &Path) -> Result<(), DemoError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

fn open_writer(path: &Path, schema: SchemaRef) -> Result<ArrowWriter<File>, DemoError> {
    let level = ZstdLevel::try_new(1).map_err(|e| parquet_err(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let file = File::create(path).map_err(|e| io_err(path, e))?;
    ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| parquet_err(path, e))
}

fn close_writer(writer: ArrowWriter<File>, path: &Path) -> Result<(), DemoError> {
    // `into_inner` writes the footer and flushes the internal buffer, reporting errors.
    writer.into_inner().map_err(|e| parquet_err(path, e))?;
    Ok(())
}

fn write_table(tmp: &Path, name: &str, batch: &RecordBatch) -> Result<(), DemoError> {
    let table_dir = tmp.join(name);
    fs::create_dir_all(&table_dir).map_err(|e| io_err(&table_dir, e))?;
    let path = table_dir.join("part-0.parquet");
    let mut writer = open_writer(&path, batch.schema())?;
    writer.write(batch).map_err(|e| parquet_err(&path, e))?;
    close_writer(writer, &path)
}

fn write_orders(
    dir: &Path,
    spec: &DemoSpec,
    products: &[Product],
    customers: i64,
) -> Result<(), DemoError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut generator = OrderGen::new(spec.seed, products, customers);
    // A zero-row batch yields the schema without drawing from the generator.
    let schema = generator.batch(1, 0)?.schema();
    let (total, mut done, mut decile, mut file_index) = (spec.orders, 0_u64, 0_u64, 0_u64);
    while done < total {
        let path = dir.join(format!("part-{file_index:05}.parquet"));
        let file_end = total.min(done + ORDERS_PER_FILE);
        let mut writer = open_writer(&path, schema.clone())?;
        while done < file_end {
            let rows = BATCH_ROWS.min(file_end - done);
            let batch = generator.batch(done as i64 + 1, rows as i64)?;
            writer.write(&batch).map_err(|e| parquet_err(&path, e))?;
            done += rows;
            let percent = done * 100 / total;
            if percent / 10 > decile {
                decile = percent / 10;
                info!(done, total, percent, "generating demo orders");
            }
        }
        close_writer(writer, &path)?;
        file_index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Decimal128Array, Int32Array, Int64Array};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    /// A unique directory under the system temp dir, removed on drop (even on panic).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let pid = std::process::id();
            let path = std::env::temp_dir().join(format!("biproxy-demo-test-{pid}-{n}"));
            let _ = fs::remove_dir_all(&path);
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn spec(orders: u64, seed: u64) -> DemoSpec {
        DemoSpec { orders, seed }
    }

    fn read_orders(dir: &Path) -> Vec<RecordBatch> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir.join("orders"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        let mut batches = Vec::new();
        for file in files {
            let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap());
            for batch in builder.unwrap().build().unwrap() {
                batches.push(batch.unwrap());
            }
        }
        batches
    }

    fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<T>()
            .unwrap()
    }

    fn amount_sum(dir: &Path) -> i128 {
        let batches = read_orders(dir);
        let sums = batches
            .iter()
            .map(|b| column::<Decimal128Array>(b, "amount").values().iter());
        sums.flatten().sum()
    }

    #[test]
    fn generates_once_and_reads_back() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("nested").join("demo");
        assert_eq!(
            ensure(&dir, &spec(5000, 7)).unwrap(),
            DemoOutcome::Generated { orders: 5000 }
        );
        for table in TABLES {
            assert!(
                fs::read_dir(dir.join(table)).unwrap().next().is_some(),
                "{table} is empty"
            );
        }
        assert!(dir.join("customers/part-0.parquet").exists());
        assert!(dir.join("orders/part-00000.parquet").exists());
        let batches = read_orders(&dir);
        let id_columns = batches.iter().map(|b| column::<Int64Array>(b, "order_id"));
        let ids: Vec<i64> = id_columns.flat_map(|c| c.values().to_vec()).collect();
        assert_eq!(ids, (1..=5000).collect::<Vec<i64>>());
        let discounts = batches
            .iter()
            .map(|b| b.column_by_name("discount").unwrap());
        let nulls: usize = discounts.map(|array| array.null_count()).sum();
        assert!((2500..=4500).contains(&nulls), "discount nulls: {nulls}");
        let marker = fs::read_to_string(dir.join(MARKER)).unwrap();
        assert_eq!(
            marker.trim(),
            r#"{"orders": 5000, "seed": 7, "version": 2}"#
        );
        assert_eq!(
            ensure(&dir, &spec(5000, 7)).unwrap(),
            DemoOutcome::AlreadyPresent
        );
        assert_eq!(
            ensure(&dir, &spec(5000, 8)).unwrap(),
            DemoOutcome::Generated { orders: 5000 }
        );
    }

    #[test]
    fn same_seed_is_reproducible_and_other_seed_differs() {
        let (a, b, c) = (TempDir::new(), TempDir::new(), TempDir::new());
        ensure(&a.0, &spec(2000, 42)).unwrap();
        ensure(&b.0, &spec(2000, 42)).unwrap();
        ensure(&c.0, &spec(2000, 43)).unwrap();
        assert_eq!(amount_sum(&a.0), amount_sum(&b.0));
        assert_ne!(amount_sum(&a.0), amount_sum(&c.0));
    }

    #[test]
    fn amount_is_quantity_times_unit_price() {
        let tmp = TempDir::new();
        ensure(&tmp.0, &spec(3000, 1)).unwrap();
        for batch in read_orders(&tmp.0) {
            let quantity = column::<Int32Array>(&batch, "quantity");
            let unit_price = column::<Decimal128Array>(&batch, "unit_price");
            let amount = column::<Decimal128Array>(&batch, "amount");
            let cost = column::<Decimal128Array>(&batch, "cost");
            for i in 0..batch.num_rows() {
                assert_eq!(
                    amount.value(i),
                    i128::from(quantity.value(i)) * unit_price.value(i)
                );
                assert!(
                    cost.value(i) * 100 >= amount.value(i) * 54,
                    "cost too low at row {i}"
                );
                assert!(
                    cost.value(i) * 100 <= amount.value(i) * 86,
                    "cost too high at row {i}"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_counts() {
        let tmp = TempDir::new();
        assert!(matches!(
            ensure(&tmp.0, &spec(0, 1)),
            Err(DemoError::BadCount(0))
        ));
        let too_many = spec(MAX_ORDERS + 1, 1);
        assert!(matches!(
            ensure(&tmp.0, &too_many),
            Err(DemoError::BadCount(100_000_001))
        ));
        assert!(!tmp.0.exists());
    }
}
