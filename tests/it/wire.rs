//! The query path and its errors, over the simple and extended protocols.

use std::io::{Read, Write};

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::support::{direct, rows, sqlstate, TestServer, ORDERS};

#[tokio::test]
async fn count_of_sales_is_the_number_of_generated_orders() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    assert_eq!(
        rows(&client, "SELECT count(*) FROM sales").await,
        vec![vec![ORDERS.to_string()]]
    );
}

#[tokio::test]
async fn aggregate_by_region_matches_the_raw_files() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let got = rows(
        &client,
        "SELECT region, count(*), sum(quantity) FROM sales GROUP BY region ORDER BY region",
    )
    .await;
    let want = direct(
        "SELECT c.region, count(*), sum(o.quantity) FROM orders o JOIN customers c \
         ON o.customer_id = c.customer_id GROUP BY c.region ORDER BY c.region",
    )
    .await;
    assert_eq!(got, want);
    assert_eq!(got.len(), 5, "five regions: {got:?}");
}

#[tokio::test]
async fn extended_protocol_binds_parameters_and_returns_binary_values() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let stmt = client
        .prepare(
            "SELECT order_id, order_date, order_ts, city, amount, discount, quantity \
                  FROM sales WHERE order_id = $1",
        )
        .await
        .unwrap();
    let want = direct(
        "SELECT o.order_id, o.order_date, c.city, o.amount, o.quantity FROM orders o \
         JOIN customers c ON o.customer_id = c.customer_id WHERE o.order_id = 42",
    )
    .await;
    let row = client.query_one(&stmt, &[&42i64]).await.unwrap();
    let order_id: i64 = row.get(0);
    let date: NaiveDate = row.get(1);
    let _ts: chrono::DateTime<Utc> = row.get(2);
    let city: String = row.get(3);
    let amount: Decimal = row.get(4);
    let _discount: Option<f64> = row.get(5);
    let quantity: i32 = row.get(6);
    assert_eq!(
        vec![
            order_id.to_string(),
            date.to_string(),
            city,
            amount.to_string(),
            quantity.to_string()
        ],
        want[0]
    );
    // The same statement, executed again with another value, is not re-planned.
    let row = client.query_one(&stmt, &[&7i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 7);
}

#[tokio::test]
async fn a_prepared_statement_is_optimized_once_and_bound_to_each_execution() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    // Parameters of two types (one compared with a text column) in the filters of a plan
    // that the optimizer reshapes.
    let stmt = client
        .prepare(
            "SELECT region, count(*) AS n FROM sales WHERE quantity >= $1 AND region <> $2 \
             GROUP BY region ORDER BY region LIMIT 3",
        )
        .await
        .unwrap();
    for (q, not) in [(1i32, "East"), (9, "North"), (5, ""), (1, "West")] {
        let got: Vec<Vec<String>> = client
            .query(&stmt, &[&q, &not])
            .await
            .unwrap()
            .iter()
            .map(|r| vec![r.get::<_, String>(0), r.get::<_, i64>(1).to_string()])
            .collect();
        let want = direct(&format!(
            "SELECT c.region, count(*) FROM orders o JOIN customers c USING (customer_id) \
             WHERE o.quantity >= {q} AND c.region <> '{not}' GROUP BY c.region \
             ORDER BY c.region LIMIT 3"
        ))
        .await;
        assert_eq!(got, want, "quantity >= {q}, region <> {not}");
    }
}

#[tokio::test]
async fn a_prepared_statement_reads_the_clock_at_each_execution() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    // `now()` is folded into the plan when it is optimized: a plan optimized once would
    // answer every later execution with the time of the first.
    let stmt = client.prepare("SELECT CAST(now() AS text)").await.unwrap();
    let first: String = client.query_one(&stmt, &[]).await.unwrap().get(0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second: String = client.query_one(&stmt, &[]).await.unwrap().get(0);
    assert_ne!(first, second);
}

#[tokio::test]
async fn named_portals_fetch_in_pages() {
    let server = TestServer::start().await;
    let mut client = server.connect("carol").await;
    let tx = client.transaction().await.unwrap();
    let portal = tx
        .bind(
            "SELECT order_id FROM sales WHERE order_id <= $1 ORDER BY order_id",
            &[&7i64],
        )
        .await
        .unwrap();
    let mut pages = Vec::new();
    loop {
        let page: Vec<i64> = tx
            .query_portal(&portal, 3)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if page.is_empty() {
            break;
        }
        pages.push(page);
    }
    assert_eq!(pages, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn text_parameters_and_nulls_round_trip() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let row = client
        .query_one(
            "SELECT $1::text AS t, NULL::int AS n, 1.5::double precision AS f, true AS b",
            &[&"上海"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "上海");
    assert_eq!(row.get::<_, Option<i32>>(1), None);
    assert_eq!(row.get::<_, f64>(2), 1.5);
    assert!(row.get::<_, bool>(3));
}

#[tokio::test]
async fn common_types_in_binary_and_text_formats() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let sql = "SELECT true AS b, 1::smallint AS i2, 2::int AS i4, 3::bigint AS i8, \
               1.5::real AS f4, 2.25::double precision AS f8, 1234.56::numeric(10,2) AS n, \
               'ab'::varchar AS v, DATE '2024-01-02' AS d, \
               TIMESTAMP '2024-01-02 03:04:05.25' AS ts, decode('0102ff', 'hex') AS by";
    // Binary (extended protocol).
    let row = client.query_one(sql, &[]).await.unwrap();
    assert!(row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, i16>("i2"), 1);
    assert_eq!(row.get::<_, i32>("i4"), 2);
    assert_eq!(row.get::<_, i64>("i8"), 3);
    assert_eq!(row.get::<_, f32>("f4"), 1.5);
    assert_eq!(row.get::<_, f64>("f8"), 2.25);
    assert_eq!(row.get::<_, Decimal>("n"), Decimal::new(123456, 2));
    assert_eq!(row.get::<_, String>("v"), "ab");
    assert_eq!(
        row.get::<_, NaiveDate>("d"),
        NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()
    );
    assert_eq!(
        row.get::<_, chrono::NaiveDateTime>("ts").to_string(),
        "2024-01-02 03:04:05.250"
    );
    assert_eq!(row.get::<_, Vec<u8>>("by"), vec![1, 2, 255]);
    // Text (simple protocol).
    let text = rows(&client, sql).await;
    assert_eq!(
        text[0][..9],
        [
            "t",
            "1",
            "2",
            "3",
            "1.5",
            "2.25",
            "1234.56",
            "ab",
            "2024-01-02"
        ]
    );
    assert_eq!(text[0][10], "\\x0102ff");
}

#[tokio::test]
async fn chinese_text_round_trips_in_filters_and_results() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let got = rows(
        &client,
        "SELECT DISTINCT province FROM sales WHERE city = '南京'",
    )
    .await;
    assert_eq!(got, vec![vec!["江苏".to_owned()]]);
}

#[tokio::test]
async fn wrong_password_is_28p01_and_unknown_workspace_3d000() {
    let server = TestServer::start().await;
    let err = server
        .try_connect("alice", "wrong", "demo")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "28P01");
    let err = server
        .try_connect("nobody", "nobody", "demo")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "28P01");
    let err = server
        .try_connect("alice", "alice", "nope")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "3D000");
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "database \"nope\" does not exist"
    );
}

#[tokio::test]
async fn sql_errors_carry_their_sqlstate() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    for (sql, code) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT no_such_column FROM sales", "42703"),
        ("INSERT INTO sales (order_id) VALUES (1)", "25006"),
        ("UPDATE sales SET quantity = 0", "25006"),
        ("DELETE FROM sales", "25006"),
        ("CREATE TABLE t (a int)", "25006"),
        ("DROP TABLE sales", "25006"),
        ("SET nonsense = 1", "42704"),
        ("SET datafusion.execution.batch_size = 1", "42501"),
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    let err = client.simple_query("DELETE FROM sales").await.unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("read-only"));
    // The session survives every error.
    assert_eq!(rows(&client, "SELECT 1").await, vec![vec!["1".to_owned()]]);
}

#[tokio::test]
async fn raw_source_tables_are_not_reachable() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let err = client
        .simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42P01");
}

#[tokio::test]
async fn several_statements_in_one_query_stop_at_the_first_error() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let err = client
        .simple_query("SELECT 1; SELECT * FROM nope; SELECT 3")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42P01");
    assert_eq!(
        rows(&client, "SELECT 1; SELECT 2").await,
        vec![vec!["1".to_owned()], vec!["2".to_owned()]]
    );
}

#[tokio::test]
async fn garbage_bytes_close_that_connection_only() {
    let server = TestServer::start().await;
    let healthy = server.connect("carol").await;
    let addr = server.addr;
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // A startup packet claiming a 1 GiB length, then noise.
        s.write_all(&[0x40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef])
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert_eq!(
        reply.first(),
        Some(&b'E'),
        "an ErrorResponse before closing: {reply:?}"
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("08P01"), "{text}");
    // The other session, and new ones, are unaffected.
    assert_eq!(rows(&healthy, "SELECT 2").await, vec![vec!["2".to_owned()]]);
    let fresh = server.connect("carol").await;
    assert_eq!(rows(&fresh, "SELECT 3").await, vec![vec!["3".to_owned()]]);
}

#[tokio::test]
async fn unsupported_protocol_version_is_refused_with_an_error() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let addr = server.addr;
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // A valid-length startup packet with protocol 1234.5678: unsupported.
        let mut startup = vec![0, 0, 0, 8];
        startup.extend_from_slice(&[0x04, 0xd2, 0x16, 0x2e]);
        s.write_all(&startup).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
    assert_eq!(rows(&client, "SELECT 4").await, vec![vec!["4".to_owned()]]);
}
