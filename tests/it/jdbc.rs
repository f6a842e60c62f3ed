//! The real pgJDBC driver (Debian's libpostgresql-jdbc-java) browsing the catalog the way
//! JDBC-based BI tools do.

use std::process::Command;

use crate::support::{direct, TestServer};

const JAR: &str = "/usr/share/java/postgresql.jar";

#[tokio::test]
async fn pgjdbc_database_metadata_and_prepared_query() {
    assert!(
        std::path::Path::new(JAR).exists(),
        "pgJDBC is missing: apt-get install libpostgresql-jdbc-java"
    );
    let server = TestServer::start().await;
    let url = format!("jdbc:postgresql://127.0.0.1:{}/demo", server.addr.port());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .args([
                "-cp",
                JAR,
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/clients/JdbcMetadata.java"
                ),
            ])
            .args([url.as_str(), "alice", "alice"])
            .output()
            .expect("java is installed")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "JdbcMetadata failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let shanghai = direct(
        "SELECT count(*) FROM orders o JOIN customers c ON o.customer_id = c.customer_id \
         WHERE c.city = '上海'",
    )
    .await;
    for expected in [
        "product=PostgreSQL 15".to_owned(),
        "schema=public".to_owned(),
        "table=customers TABLE".to_owned(),
        "table=sales TABLE".to_owned(),
        "column=order_id int8 -5".to_owned(),
        "column=order_date date 91".to_owned(),
        "column=city text 12".to_owned(),
        "column=amount numeric 2".to_owned(),
        "typeinfo=many".to_owned(),
        "table_remark=sales:Orders with their customer, product and store (订单明细)".to_owned(),
        "column_remark=region:Sales region of the customer: East, North, South, West or Central"
            .to_owned(),
        format!("shanghai_orders={}", shanghai[0][0]),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
