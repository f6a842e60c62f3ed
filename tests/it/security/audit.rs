//! The audit log: one JSON line per statement, also for statements refused at Parse.

use crate::support::{rows, sqlstate, TestServer};

#[tokio::test]
async fn the_audit_log_has_one_line_per_statement() {
    let path = std::env::temp_dir().join(format!("biproxy-it-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let config =
        crate::support::demo_config(&format!("audit_log = {:?}", path.display().to_string()));
    let server = TestServer::with_config(config).await;
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "{} application_name=audit-test",
            server.conn_str("alice", "alice", "demo")
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    let east = rows(&client, "SELECT count(*) FROM sales").await;
    let err = client
        .simple_query("SELECT nope FROM sales")
        .await
        .expect_err("no such column");
    assert_eq!(sqlstate(&err), "42703");
    let typed = client
        .query("SELECT order_id FROM sales WHERE order_id <= $1", &[&3_i64])
        .await
        .expect("extended query");
    // Refused at Parse: the extended protocol never reaches Execute, but is audited.
    let err = client
        .prepare("SELECT secret FROM sales")
        .await
        .expect_err("no such column");
    assert_eq!(sqlstate(&err), "42703");
    // Asked again: answered from the result cache, and logged as such.
    assert_eq!(rows(&client, "SELECT count(*) FROM sales").await, east);
    let again = client
        .query("SELECT order_id FROM sales WHERE order_id <= $1", &[&3_i64])
        .await
        .expect("extended query");
    assert_eq!(again.len(), typed.len());
    let text = std::fs::read_to_string(&path).expect("the audit log");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["user"], "alice");
        assert_eq!(line["workspace"], "demo");
        assert_eq!(line["application_name"], "audit-test");
        assert_eq!(line["cache_hit"], i >= 4, "{line}");
        assert!(
            line["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{line}"
        );
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    // A statement that failed to plan names no datasets.
    assert_eq!(lines[0]["datasets"], serde_json::json!(["sales"]));
    assert_eq!(lines[1]["datasets"], serde_json::json!([]));
    assert_eq!(lines[2]["datasets"], serde_json::json!(["sales"]));
    assert_eq!(lines[0]["statement"], "SELECT count(*) FROM sales");
    assert_eq!(lines[0]["outcome"], "ok");
    assert_eq!(lines[0]["rows"], 1);
    assert_eq!(lines[0]["sqlstate"], serde_json::Value::Null);
    assert_eq!(east.len(), 1);
    assert_eq!(lines[1]["outcome"], "error");
    assert_eq!(lines[1]["sqlstate"], "42703");
    assert_eq!(lines[1]["rows"], 0);
    assert_eq!(lines[2]["outcome"], "ok");
    assert_eq!(lines[2]["rows"], typed.len() as u64);
    assert_eq!(lines[3]["statement"], "SELECT secret FROM sales");
    assert_eq!(lines[3]["outcome"], "error");
    assert_eq!(lines[3]["sqlstate"], "42703");
    for hit in &lines[4..] {
        assert_eq!(hit["datasets"], serde_json::json!(["sales"]), "{hit}");
        assert_eq!(hit["outcome"], "ok", "{hit}");
    }
    assert_eq!(lines[4]["rows"], 1);
    assert_eq!(lines[5]["rows"], typed.len() as u64);
}
