//! CancelRequest and statement_timeout stop a running query, while planning and while
//! rows stream, with SQLSTATE 57014; the session stays usable.

use std::time::{Duration, Instant};

use futures::{pin_mut, StreamExt};
use tokio_postgres::NoTls;

use crate::support::{rows, sqlstate, TestServer};

/// A query that runs for many seconds (a cross join of 20,000 × 20,000 rows).
const LONG_AGGREGATE: &str =
    "SELECT count(*) FROM sales a CROSS JOIN sales b WHERE a.amount + b.amount < 0";

/// A query that streams rows for many seconds.
const LONG_STREAM: &str = "SELECT a.order_id, b.order_id FROM sales a CROSS JOIN sales b";

#[tokio::test]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let started = Instant::now();
    let err = client.simple_query(LONG_AGGREGATE).await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(sqlstate(&err), "57014");
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "canceling statement due to user request"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(rows(&client, "SELECT 1").await, vec![vec!["1".to_owned()]]);
}

#[tokio::test]
async fn statement_timeout_stops_an_aggregate() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    client
        .simple_query("SET statement_timeout = 300")
        .await
        .unwrap();
    let started = Instant::now();
    let err = client.simple_query(LONG_AGGREGATE).await.unwrap_err();
    assert_eq!(sqlstate(&err), "57014");
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "canceling statement due to statement timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeout took {:?}",
        started.elapsed()
    );
    client
        .simple_query("SET statement_timeout = 0")
        .await
        .unwrap();
    assert_eq!(rows(&client, "SELECT 2").await, vec![vec!["2".to_owned()]]);
}

#[tokio::test]
async fn statement_timeout_stops_rows_that_are_already_streaming() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    client
        .simple_query("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let stream = client
        .query_raw(LONG_STREAM, std::iter::empty::<i64>())
        .await
        .expect("the query starts streaming before the timeout");
    pin_mut!(stream);
    let mut received = 0u64;
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => received += 1,
            Some(Err(e)) => break e,
            None => panic!("a 400-million-row stream finished within the timeout"),
        }
    };
    assert!(
        received > 0,
        "rows were streaming before the timeout hit: {err:?}"
    );
    assert_eq!(sqlstate(&err), "57014");
}

#[tokio::test]
async fn cancel_with_a_wrong_key_does_nothing() {
    let server = TestServer::start().await;
    let victim = server.connect("carol").await;
    // Another client's token carries another pid/secret: cancelling it must not touch `victim`.
    let other = server.connect("carol").await;
    let token = other.cancel_token();
    let query = tokio::spawn(async move {
        victim
            .simple_query("SET statement_timeout = 1500")
            .await
            .unwrap();
        victim.simple_query(LONG_AGGREGATE).await.unwrap_err()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel_query(NoTls).await.unwrap();
    let err = query.await.unwrap();
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "canceling statement due to statement timeout"
    );
}
