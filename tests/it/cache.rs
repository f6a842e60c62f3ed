//! The result cache over a real socket: who shares entries, expiry, the byte bound,
//! results too large to keep, and single-flight against a real PostgreSQL.

use std::time::Duration;

use crate::support::admin::{metric, request};
use crate::support::databases::Databases;
use crate::support::{demo_config_text, direct, rows, TestServer};

fn config(extra: &str) -> biproxy::config::Config {
    let text = format!("{}\n{extra}", demo_config_text(""));
    biproxy::config::parse(&text, "cache.toml", std::path::Path::new(".")).expect("valid config")
}

async fn counts(server: &TestServer) -> (f64, f64) {
    let admin = server.admin.expect("admin interface");
    (
        metric(admin, "biproxy_cache_hits_total").await,
        metric(admin, "biproxy_cache_misses_total").await,
    )
}

#[tokio::test]
async fn users_share_an_entry_only_when_their_rows_are_the_same() {
    let server = TestServer::with_config(config("")).await;
    let (alice, bob, carol) = (
        server.connect("alice").await,
        server.connect("bob").await,
        server.connect("carol").await,
    );
    let q = "SELECT region, count(*) FROM sales GROUP BY region ORDER BY region";
    let raw = |filter: &str| {
        format!(
            "SELECT c.region, count(*) FROM orders o JOIN customers c USING (customer_id) \
             {filter} GROUP BY c.region ORDER BY c.region"
        )
    };
    let east = direct(&raw("WHERE c.region = 'East'")).await;
    let north_south = direct(&raw("WHERE c.region IN ('North', 'South')")).await;
    let all = direct(&raw("")).await;
    assert_eq!(rows(&alice, q).await, east);
    assert_eq!(rows(&bob, q).await, north_south);
    assert_eq!(rows(&carol, q).await, all);
    assert_eq!(
        counts(&server).await,
        (0.0, 3.0),
        "three principals, three plans"
    );
    // Again, in the other order: each gets their own rows back, from the cache.
    assert_eq!(rows(&carol, q).await, all);
    assert_eq!(rows(&bob, q).await, north_south);
    assert_eq!(rows(&alice, q).await, east);
    assert_eq!(counts(&server).await, (3.0, 3.0));
    // A dataset without policies gives everyone the same plan: one entry serves all.
    let p = "SELECT category, count(*) FROM products GROUP BY category ORDER BY category";
    let a = rows(&alice, p).await;
    assert_eq!(rows(&bob, p).await, a);
    assert_eq!(counts(&server).await, (4.0, 4.0));
    // Volatile functions are never served from the cache.
    let before = metric(server.admin.unwrap(), "biproxy_cache_uncacheable_total").await;
    rows(&alice, "SELECT count(*), random() < 2 FROM sales").await;
    rows(&alice, "SELECT count(*), random() < 2 FROM sales").await;
    let after = metric(server.admin.unwrap(), "biproxy_cache_uncacheable_total").await;
    assert_eq!(after - before, 2.0);
    assert_eq!(counts(&server).await, (4.0, 4.0));
}

#[tokio::test]
async fn a_prepared_statement_is_answered_per_user_and_per_parameter() {
    let server = TestServer::with_config(config("")).await;
    let (alice, bob) = (server.connect("alice").await, server.connect("bob").await);
    let sql = "SELECT count(*) FROM sales WHERE quantity >= $1";
    let raw = |region: &str, q: i32| {
        format!(
            "SELECT count(*) FROM orders o JOIN customers c USING (customer_id) \
             WHERE {region} AND o.quantity >= {q}"
        )
    };
    for q in [1, 5, 9] {
        let a: i64 = direct(&raw("c.region = 'East'", q)).await[0][0]
            .parse()
            .unwrap();
        let b: i64 = direct(&raw("c.region IN ('North', 'South')", q)).await[0][0]
            .parse()
            .unwrap();
        for _ in 0..2 {
            assert_eq!(count(&alice, sql, q).await, a, "alice, quantity >= {q}");
            assert_eq!(count(&bob, sql, q).await, b, "bob, quantity >= {q}");
        }
    }
    assert_eq!(counts(&server).await, (6.0, 6.0));
}

/// The count a prepared statement with one integer parameter returns.
async fn count(c: &tokio_postgres::Client, sql: &str, q: i32) -> i64 {
    let stmt = c.prepare(sql).await.unwrap();
    c.query_one(&stmt, &[&q]).await.unwrap().get(0)
}

#[tokio::test]
async fn entries_expire_after_their_ttl_and_a_flush_drops_them() {
    let server = TestServer::with_config(config("[cache]\nttl = \"1s\"\n")).await;
    let alice = server.connect("alice").await;
    let q = "SELECT count(*) FROM sales";
    let first = rows(&alice, q).await;
    assert_eq!(rows(&alice, q).await, first);
    assert_eq!(counts(&server).await, (1.0, 1.0));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(rows(&alice, q).await, first);
    assert_eq!(counts(&server).await, (1.0, 2.0), "expired after 1s");
    let admin = server.admin.unwrap();
    let (status, body) = request(admin, "POST", "/cache/flush?workspace=demo&dataset=sales").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(&alice, q).await, first);
    assert_eq!(counts(&server).await, (1.0, 3.0), "flushed");
    let (status, body) = request(admin, "POST", "/cache/flush?workspace=demo&dataset=nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no dataset \\\"nope\\\""), "{body}");
}

#[tokio::test]
async fn the_cache_stays_within_its_bytes_and_large_results_stream_through() {
    let server = TestServer::with_config(config(
        "[cache]\nmax_bytes = 400000\nmax_entry_bytes = 100000\n",
    ))
    .await;
    let carol = server.connect("carol").await;
    for i in 0..40 {
        let q = format!("SELECT order_id, amount FROM sales WHERE order_id % 40 = {i}");
        assert_eq!(rows(&carol, &q).await.len(), 500);
    }
    let admin = server.admin.unwrap();
    let held = metric(admin, "biproxy_cache_bytes").await;
    assert!(held > 0.0 && held <= 400_000.0, "held {held} bytes");
    let entries = metric(admin, "biproxy_cache_entries").await;
    assert!(
        entries < 40.0,
        "{entries} entries: some must have been evicted"
    );
    // Every order with all columns is far over 100 kB: all rows arrive, nothing is kept.
    // No ORDER BY: the join's output order may differ between runs, so compare sorted.
    let sorted = |mut r: Vec<Vec<String>>| {
        r.sort();
        r
    };
    let all = sorted(rows(&carol, "SELECT * FROM sales").await);
    assert_eq!(all.len(), crate::support::ORDERS as usize);
    assert_eq!(metric(admin, "biproxy_cache_too_large_total").await, 1.0);
    assert_eq!(sorted(rows(&carol, "SELECT * FROM sales").await), all);
    assert_eq!(metric(admin, "biproxy_cache_too_large_total").await, 2.0);
}

#[tokio::test]
async fn concurrent_identical_queries_run_once_on_the_source() {
    let db = Databases::create().await;
    // Each execution of the view scans `t` once and sleeps, so concurrent queries overlap.
    db.pg()
        .await
        .batch_execute(
            "CREATE TABLE t (id int, v int);
             INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 1000) g;
             CREATE VIEW probe AS SELECT t.id, t.v FROM t,
               (SELECT pg_sleep(0.5) AS s) AS once;",
        )
        .await
        .unwrap();
    let text = format!(
        "{}\n{}\n[[dataset]]\nworkspace = \"demo\"\nname = \"probe\"\nsource = \"pg\"\ntable = \"probe\"\n",
        demo_config_text(""),
        db.sources_toml("pg", "my", "")
    );
    let config = biproxy::config::parse(&text, "flight.toml", std::path::Path::new(".")).unwrap();
    let server = TestServer::with_config(config).await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(
            server
                .connect(if i % 2 == 0 { "alice" } else { "bob" })
                .await,
        );
    }
    let q = "SELECT v, count(*), sum(id) FROM probe GROUP BY v ORDER BY v";
    let answers = futures::future::join_all(clients.iter().map(|c| rows(c, q))).await;
    let expected: Vec<Vec<String>> = (0..7)
        .map(|v| {
            let ids: Vec<i64> = (1..=1000).filter(|g| g % 7 == v).collect();
            vec![
                v.to_string(),
                ids.len().to_string(),
                ids.iter().sum::<i64>().to_string(),
            ]
        })
        .collect();
    for a in &answers {
        assert_eq!(a, &expected);
    }
    // PostgreSQL counts the scans of `t` (each backend reports when it goes idle, so
    // wait until the count has settled).
    let pg = db.pg().await;
    let mut scans = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now: i64 = pg
            .query_one(
                "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 't'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if now > 0 && now == scans {
            break;
        }
        scans = now;
    }
    assert_eq!(scans, 1, "8 identical queries, one statement on PostgreSQL");
    let admin = server.admin.unwrap();
    assert_eq!(metric(admin, "biproxy_cache_misses_total").await, 1.0);
    assert_eq!(
        metric(admin, "biproxy_cache_collapsed_total").await
            + metric(admin, "biproxy_cache_hits_total").await,
        7.0
    );
}

#[tokio::test]
async fn a_source_table_named_like_another_dataset_does_not_borrow_its_ttl() {
    // `sales` reads the lake's table `orders`; a dataset named `orders` is never cached.
    // Only `sales`'s own TTL applies to queries on `sales`.
    let server = TestServer::with_config(config(
        "[[dataset]]\nworkspace = \"demo\"\nname = \"orders\"\nsource = \"demo_lake\"\n\
         table = \"orders\"\ncache_ttl = \"0\"\n",
    ))
    .await;
    let carol = server.connect("carol").await;
    let q = "SELECT count(*) FROM sales";
    assert_eq!(rows(&carol, q).await, rows(&carol, q).await);
    assert_eq!(counts(&server).await, (1.0, 1.0));
    let o = "SELECT count(*) FROM orders";
    assert_eq!(rows(&carol, o).await, rows(&carol, o).await);
    assert_eq!(
        counts(&server).await,
        (1.0, 1.0),
        "orders has cache_ttl = 0"
    );
}
