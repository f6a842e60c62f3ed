//! What drivers run when they connect: functions, settings, transactions, column names.

use crate::support::{rows, sqlstate, TestServer};

fn one(v: &str) -> Vec<Vec<String>> {
    vec![vec![v.to_owned()]]
}

#[tokio::test]
async fn identity_functions_answer_for_the_session() {
    let server = TestServer::start().await;
    let client = server.connect("bob").await;
    assert_eq!(
        rows(&client, "SELECT current_database()").await,
        one("demo")
    );
    assert_eq!(rows(&client, "SELECT current_user").await, one("bob"));
    assert_eq!(rows(&client, "SELECT session_user").await, one("bob"));
    assert_eq!(
        rows(&client, "SELECT current_schema()").await,
        one("public")
    );
    let version = rows(&client, "SELECT version()").await;
    assert!(
        version[0][0].starts_with("PostgreSQL 15.0 (biproxy "),
        "{version:?}"
    );
}

#[tokio::test]
async fn server_version_is_postgres_15_with_a_biproxy_suffix() {
    let server = TestServer::start().await;
    let client = server.connect("alice").await;
    let v = rows(&client, "SHOW server_version").await;
    assert!(v[0][0].starts_with("15.0 (biproxy "), "{v:?}");
    assert_eq!(
        rows(&client, "SHOW server_version_num").await,
        one("150000")
    );
}

#[tokio::test]
async fn set_show_reset_for_driver_parameters() {
    let server = TestServer::start().await;
    let client = server.connect("alice").await;
    for (set, show, value) in [
        (
            "SET application_name = 'metabase'",
            "SHOW application_name",
            "metabase",
        ),
        ("SET search_path TO public", "SHOW search_path", "public"),
        ("SET DateStyle = 'ISO, DMY'", "SHOW DateStyle", "ISO, DMY"),
        ("SET extra_float_digits = 3", "SHOW extra_float_digits", "3"),
        (
            "SET client_encoding = 'UTF8'",
            "SHOW client_encoding",
            "UTF8",
        ),
        (
            "SET TIME ZONE 'Asia/Shanghai'",
            "SHOW TimeZone",
            "Asia/Shanghai",
        ),
        (
            "SET statement_timeout = '5s'",
            "SHOW statement_timeout",
            "5000ms",
        ),
    ] {
        client
            .simple_query(set)
            .await
            .unwrap_or_else(|e| panic!("{set}: {e:?}"));
        assert_eq!(rows(&client, show).await, one(value), "{show}");
    }
    assert_eq!(
        rows(&client, "SELECT current_setting('application_name')").await,
        one("metabase")
    );
    client.simple_query("RESET ALL").await.unwrap();
    assert_eq!(rows(&client, "SHOW DateStyle").await, one("ISO, MDY"));
}

#[tokio::test]
async fn show_all_lists_every_parameter_with_its_value() {
    let server = TestServer::start().await;
    let client = server.connect("alice").await;
    let all = rows(&client, "SHOW ALL").await;
    let find = |name: &str| all.iter().find(|r| r[0] == name).map(|r| r[1].clone());
    assert_eq!(find("client_encoding").as_deref(), Some("UTF8"));
    assert_eq!(find("default_transaction_read_only").as_deref(), Some("on"));
    assert!(all.len() >= 15, "{all:?}");
}

#[tokio::test]
async fn transactions_are_accepted_as_no_ops() {
    let server = TestServer::start().await;
    let mut client = server.connect("alice").await;
    let tx = client.transaction().await.unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM stores", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 60);
    tx.commit().await.unwrap();
    client
        .simple_query("BEGIN; SAVEPOINT a; RELEASE SAVEPOINT a; ROLLBACK")
        .await
        .unwrap();
    client
        .simple_query("START TRANSACTION READ ONLY; COMMIT")
        .await
        .unwrap();
}

#[tokio::test]
async fn result_columns_are_named_like_postgres() {
    let server = TestServer::start().await;
    let client = server.connect("alice").await;
    let stmt = client
        .prepare("SELECT count(*), 1, sum(quantity), region, '1'::int FROM sales GROUP BY region")
        .await
        .unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "?column?", "sum", "region", "int4"]);
}

#[tokio::test]
async fn unknown_setting_in_current_setting_is_an_error() {
    let server = TestServer::start().await;
    let client = server.connect("alice").await;
    let err = client.simple_query("SHOW no_such_thing").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42704");
}

#[tokio::test]
async fn prepared_statements_can_be_deallocated() {
    let server = TestServer::start().await;
    let client = server.connect("alice").await;
    let err = client.simple_query("DEALLOCATE nope").await.unwrap_err();
    assert_eq!(sqlstate(&err), "26000");
    client
        .simple_query("DEALLOCATE ALL; DISCARD ALL")
        .await
        .unwrap();
}
