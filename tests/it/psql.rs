//! The real `psql` binary: what a person browsing the demo sees.

use std::process::Command;

use crate::support::TestServer;

/// Run psql with `args` against the demo as `user`; returns stdout, panicking on failure.
async fn psql(server: &TestServer, user: &str, args: &[&str]) -> String {
    let conn = server.conn_str(user, user, "demo");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let shown = args.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("psql")
            .arg("-X")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .args(&args)
            .arg(&conn)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", "disable")
            .output()
            .expect("psql is installed: apt-get install postgresql-client")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "psql {shown:?} failed:\n{stderr}\n{stdout}"
    );
    assert!(stderr.is_empty(), "psql printed errors:\n{stderr}");
    stdout
}

#[tokio::test]
async fn psql_count_returns_the_order_count() {
    let server = TestServer::start().await;
    let out = psql(
        &server,
        "carol",
        &["-At", "-c", "SELECT count(*) FROM sales"],
    )
    .await;
    assert_eq!(out, format!("{}\n", crate::support::ORDERS));
}

#[tokio::test]
async fn psql_dt_lists_the_datasets() {
    let server = TestServer::start().await;
    let out = psql(&server, "alice", &["-At", "-c", "\\dt"]).await;
    assert_eq!(
        out,
        "public|customers|table|postgres\n\
         public|products|table|postgres\n\
         public|sales|table|postgres\n\
         public|stores|table|postgres\n"
    );
}

#[tokio::test]
async fn psql_shows_a_viewer_only_their_datasets_and_columns() {
    let server = TestServer::start().await;
    let out = psql(&server, "dave", &["-At", "-c", "\\dt"]).await;
    assert_eq!(out, "public|sales|table|postgres\n");
    let out = psql(&server, "dave", &["-At", "-c", "\\d sales"]).await;
    assert!(
        out.lines().any(|l| l.starts_with("customer_name|")),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("cost|")), "{out}");
}

#[tokio::test]
async fn psql_d_sales_lists_columns_with_types() {
    let server = TestServer::start().await;
    let out = psql(&server, "alice", &["-At", "-c", "\\d sales"]).await;
    let lines: Vec<&str> = out.lines().collect();
    for expected in [
        "order_id|bigint",
        "order_date|date",
        "order_ts|timestamp with time zone",
        "city|text",
        "quantity|integer",
        "amount|numeric",
        "discount|double precision",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{expected}|"))),
            "missing {expected} in:\n{out}"
        );
    }
}

#[tokio::test]
async fn psql_d_plus_l_and_dn_work() {
    let server = TestServer::start().await;
    let out = psql(&server, "alice", &["-At", "-c", "\\d+ sales"]).await;
    assert!(out.lines().any(|l| l.starts_with("region|text|")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("amount|numeric|")
                && l.ends_with("|quantity × unit_price, in yuan")),
        "the column's description is shown:\n{out}"
    );
    let out = psql(&server, "alice", &["-At", "-c", "\\dt+ sales"]).await;
    assert!(
        out.lines().any(|l| l.starts_with("public|sales|table|")
            && l.ends_with("|Orders with their customer, product and store (订单明细)")),
        "{out}"
    );
    let out = psql(&server, "alice", &["-At", "-c", "\\l"]).await;
    assert!(out.lines().any(|l| l.starts_with("demo|")), "{out}");
    let out = psql(&server, "alice", &["-At", "-c", "\\dn"]).await;
    assert!(out.lines().any(|l| l.starts_with("public|")), "{out}");
}
