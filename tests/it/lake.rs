//! The lake source beyond the demo: CSV tables and hive-style partitioned directories,
//! whose partition filters skip files (checked in the plan's file list).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use biproxy::config;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use crate::support::{demo_config_text, rows, table, TestServer};

/// A lake directory removed when the test ends.
struct Lake(PathBuf);

impl Lake {
    fn create() -> Lake {
        let dir = std::env::temp_dir().join(format!("biproxy-it-lake-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lake dir");
        Lake(dir)
    }

    fn parquet(&self, relative: &str, users: &[&str], amounts: &[i64]) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("partition dir");
        let batch = RecordBatch::try_from_iter([
            (
                "user_name",
                Arc::new(StringArray::from(users.to_vec())) as ArrayRef,
            ),
            (
                "amount",
                Arc::new(Int64Array::from(amounts.to_vec())) as ArrayRef,
            ),
        ])
        .expect("batch");
        let file = std::fs::File::create(&path).expect("parquet file");
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }

    fn file(&self, relative: &str, text: &str) {
        std::fs::write(self.0.join(relative), text).expect("write file");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Lake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn csv_tables_and_hive_partitions_with_pruning() {
    let lake = Lake::create();
    lake.parquet(
        "events/dt=2024-01-01/part-0.parquet",
        &["ann", "bo"],
        &[5, 7],
    );
    lake.parquet("events/dt=2024-01-02/part-0.parquet", &["ann"], &[11]);
    lake.parquet(
        "events/dt=2024-01-03/part-0.parquet",
        &["cy", "cy", "bo"],
        &[1, 2, 3],
    );
    lake.file(
        "rates.csv",
        "code,name,rate\nEUR,欧元,7.8\nUSD,US dollar,7.1\n",
    );
    let text = format!(
        "{}\n[[source]]\nname = \"files\"\nkind = \"lake\"\npath = {:?}\n\n\
         [[dataset]]\nworkspace = \"demo\"\nname = \"events\"\nsource = \"files\"\ntable = \"events\"\n\n\
         [[dataset]]\nworkspace = \"demo\"\nname = \"rates\"\nsource = \"files\"\ntable = \"rates\"\n",
        demo_config_text(""),
        lake.path().display().to_string()
    );
    let config = config::parse(&text, "lake.toml", Path::new(".")).expect("config");
    let server = TestServer::with_config(config).await;
    let client = server.connect("carol").await;
    assert_eq!(
        rows(
            &client,
            "SELECT dt, count(*), sum(amount) FROM events GROUP BY dt ORDER BY dt"
        )
        .await,
        table(&[
            ["2024-01-01", "2", "12"],
            ["2024-01-02", "1", "11"],
            ["2024-01-03", "3", "6"]
        ])
    );
    let pruned = "SELECT user_name, amount FROM events WHERE dt = '2024-01-03' AND amount > 1 ORDER BY amount";
    assert_eq!(
        rows(&client, pruned).await,
        table(&[["cy", "2"], ["bo", "3"]])
    );
    let plan: String = rows(&client, &format!("EXPLAIN {pruned}"))
        .await
        .into_iter()
        .filter(|r| r[0] == "physical_plan")
        .map(|r| r[1].clone())
        .collect();
    assert!(plan.contains("dt=2024-01-03/part-0.parquet"), "{plan}");
    assert!(
        !plan.contains("dt=2024-01-01") && !plan.contains("dt=2024-01-02"),
        "other partitions are not read:\n{plan}"
    );
    assert_eq!(
        rows(&client, "SELECT code, name, rate FROM rates ORDER BY code").await,
        table(&[["EUR", "欧元", "7.8"], ["USD", "US dollar", "7.1"]])
    );
    drop(lake);
}
