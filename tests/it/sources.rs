//! PostgreSQL and MySQL sources: pushdown as one statement, types, cross-source joins and
//! faults, against the real servers on this machine. Each test creates its own databases
//! and drops them at the end.

use std::time::Duration;

use biproxy::config;
use mysql_async::prelude::Queryable;
use tokio_postgres::NoTls;

use crate::support::databases::Databases;
use crate::support::{demo_config_text, explain, rows, sqlstate, table, TestServer};

/// A PostgreSQL and a MariaDB database with a small shop in them.
struct Shop {
    db: Databases,
}

impl Shop {
    async fn create() -> Shop {
        let db = Databases::create().await;
        db.pg()
            .await
            .batch_execute(
                "CREATE TABLE orders (order_id int PRIMARY KEY, customer_id int NOT NULL, \
                   qty int8, amount numeric(12,2), paid bool, ordered_at timestamptz, day date, \
                   note text, raw bytea);
                 INSERT INTO orders VALUES
                   (1, 10, 2, 100.50, true, '2024-03-01 10:00:00+08', '2024-03-01', '上海 order', '\\x00ff'),
                   (2, 10, 1, 20.25, false, '2024-03-02 12:30:00+00', '2024-03-02', NULL, NULL),
                   (3, 20, 5, 999999999.99, true, '2024-04-01 00:00:00+00', '2024-04-01', 'plain', '\\x01'),
                   (4, 30, 3, 7.00, NULL, NULL, NULL, 'x', NULL);",
            )
            .await
            .expect("load PostgreSQL test data");
        let mut my = db.my().await;
        my.query_drop(
            "CREATE TABLE customers (customer_id int PRIMARY KEY, region varchar(20), \
               big bigint unsigned, price decimal(10,3), vip tinyint(1), joined datetime, \
               photo blob);
             INSERT INTO customers VALUES
               (10, '华东', 18446744073709551615, 1.125, 1, '2020-01-02 03:04:05', x'cafe'),
               (20, 'North', 0, NULL, 0, NULL, NULL),
               (30, 'North', 42, 0.001, NULL, '1999-12-31 23:59:59', x'');",
        )
        .await
        .expect("load MariaDB test data");
        my.disconnect().await.ok();
        Shop { db }
    }

    /// The demo config plus the two sources and datasets over them.
    fn config(&self, extra_source_settings: &str) -> config::Config {
        let text = format!(
            "{}\n{}\n\
             [[dataset]]\nworkspace = \"demo\"\nname = \"pg_orders\"\nsource = \"shop_pg\"\ntable = \"orders\"\n\n\
             [[dataset]]\nworkspace = \"demo\"\nname = \"my_customers\"\nsource = \"shop_my\"\ntable = \"customers\"\n\n\
             [[dataset]]\nworkspace = \"demo\"\nname = \"orders_by_customer\"\nsource = \"shop_pg\"\ntable = \"orders\"\n\
             [[dataset.join]]\ntable = \"customers\"\nsource = \"shop_my\"\nkey = \"customer_id\"\ncolumns = [\"region\"]\n",
            demo_config_text(""),
            self.db.sources_toml("shop_pg", "shop_my", extra_source_settings),
        );
        config::parse(&text, "sources.toml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("test config: {e}"))
    }
}

#[tokio::test]
async fn an_aggregate_on_postgres_runs_there_as_one_statement() {
    let shop = Shop::create().await;
    let server = TestServer::with_config(shop.config("")).await;
    let client = server.connect("alice").await;
    let sql = "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM pg_orders \
               WHERE qty > 1 GROUP BY customer_id ORDER BY customer_id LIMIT 10";
    assert_eq!(
        rows(&client, sql).await,
        table(&[
            ["10", "100.50", "1"],
            ["20", "999999999.99", "1"],
            ["30", "7.00", "1"]
        ])
    );
    let plan = explain(&client, sql).await;
    let pushed: Vec<&str> = plan.lines().filter(|l| l.contains("sql=")).collect();
    assert_eq!(pushed.len(), 1, "one statement for one source:\n{plan}");
    let statement = pushed[0];
    for part in [
        "sum(",
        "count(",
        "FROM \"orders\"",
        "WHERE",
        "GROUP BY",
        "ORDER BY",
        "LIMIT 10",
    ] {
        assert!(statement.contains(part), "{part} is pushed down:\n{plan}");
    }
    drop(shop);
}

#[tokio::test]
async fn postgres_types_keep_their_values() {
    use chrono::{DateTime, NaiveDate, Utc};
    use rust_decimal::Decimal;
    let shop = Shop::create().await;
    let server = TestServer::with_config(shop.config("")).await;
    let client = server.connect("alice").await;
    let got = client
        .query(
            "SELECT order_id, qty, amount, paid, ordered_at, day, note, raw FROM pg_orders ORDER BY order_id",
            &[],
        )
        .await
        .expect("typed query");
    assert_eq!(got.len(), 4);
    let first = &got[0];
    assert_eq!(first.get::<_, i32>(0), 1);
    assert_eq!(first.get::<_, i64>(1), 2);
    assert_eq!(first.get::<_, Decimal>(2), Decimal::new(10050, 2));
    assert_eq!(first.get::<_, Option<bool>>(3), Some(true));
    assert_eq!(
        first.get::<_, DateTime<Utc>>(4),
        "2024-03-01T02:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        first.get::<_, NaiveDate>(5),
        NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()
    );
    assert_eq!(first.get::<_, &str>(6), "上海 order");
    assert_eq!(first.get::<_, &[u8]>(7), &[0u8, 255]);
    assert_eq!(got[2].get::<_, Decimal>(2), Decimal::new(99_999_999_999, 2));
    let last = &got[3];
    assert_eq!(last.get::<_, Option<bool>>(3), None);
    assert_eq!(last.get::<_, Option<DateTime<Utc>>>(4), None);
    assert_eq!(last.get::<_, Option<&[u8]>>(7), None);
    drop(shop);
}

#[tokio::test]
async fn mysql_types_keep_their_values_and_filters_run_there() {
    let shop = Shop::create().await;
    let server = TestServer::with_config(shop.config("")).await;
    let client = server.connect("alice").await;
    assert_eq!(
        rows(
            &client,
            "SELECT customer_id, region, big, price, vip, joined, photo FROM my_customers ORDER BY customer_id"
        )
        .await,
        table(&[
            ["10", "华东", "18446744073709551615", "1.125", "t", "2020-01-02 03:04:05.000000", "\\xcafe"],
            ["20", "North", "0", "NULL", "f", "NULL", "NULL"],
            ["30", "North", "42", "0.001", "NULL", "1999-12-31 23:59:59.000000", "\\x"],
        ])
    );
    let sql = "SELECT region, count(*) FROM my_customers WHERE big < 100 GROUP BY region";
    assert_eq!(rows(&client, sql).await, table(&[["North", "2"]]));
    let plan = explain(&client, sql).await;
    assert!(
        plan.contains("FROM `") && plan.contains("WHERE") && plan.contains("GROUP BY"),
        "filter and aggregate pushed to MariaDB in its dialect:\n{plan}"
    );
    drop(shop);
}

#[tokio::test]
async fn a_join_across_sources_runs_in_biproxy_with_each_side_pushed() {
    let shop = Shop::create().await;
    let server = TestServer::with_config(shop.config("")).await;
    let client = server.connect("alice").await;
    let sql = "SELECT region, sum(amount) FROM orders_by_customer WHERE qty >= 1 \
               GROUP BY region ORDER BY region";
    assert_eq!(
        rows(&client, sql).await,
        table(&[["North", "1000000006.99"], ["华东", "120.75"]])
    );
    let plan = explain(&client, sql).await;
    let statements: Vec<&str> = plan.lines().filter(|l| l.contains("sql=")).collect();
    assert_eq!(statements.len(), 2, "one statement per source:\n{plan}");
    assert!(
        statements
            .iter()
            .any(|s| s.contains("\"orders\"") && s.contains("WHERE")),
        "the orders filter runs on PostgreSQL:\n{plan}"
    );
    assert!(
        statements.iter().any(|s| s.contains("`customers`")),
        "{plan}"
    );
    drop(shop);
}

#[tokio::test]
async fn a_source_that_is_down_leaves_the_rest_serving() {
    let shop = Shop::create().await;
    let mut config = shop.config("");
    for s in &mut config.sources {
        if let config::SourceKind::Sql(sql) = &mut s.kind {
            if s.name == "shop_pg" {
                sql.port = 1;
            }
        }
    }
    let server = TestServer::with_config(config).await;
    let client = server.connect("alice").await;
    assert_eq!(
        rows(&client, "SELECT count(*) FROM my_customers").await,
        table(&[["3"]])
    );
    let err = client
        .simple_query("SELECT count(*) FROM pg_orders")
        .await
        .expect_err("its datasets are not served");
    assert_eq!(sqlstate(&err), "08001", "{err:?}");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("shop_pg"), "{message}");
    drop(shop);
}

#[tokio::test]
async fn busy_pool_timeout_and_cancel_reach_the_source() {
    let shop = Shop::create().await;
    let server = TestServer::with_config(
        shop.config("pool_size = 1\npool_timeout = \"300ms\"\nstatement_timeout = \"1s\""),
    )
    .await;
    let client = server.connect("alice").await;
    // The pool is the point here: with the result cache, alice's query would wait for
    // bob's identical one instead of for a connection.
    rows(&client, "SET biproxy.cache = off").await;
    // Hold a lock so the pushed statement waits on PostgreSQL.
    let locker = shop.db.pg().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let blocked = {
        let other = server.connect("bob").await;
        rows(&other, "SET biproxy.cache = off").await;
        tokio::spawn(async move { other.simple_query("SELECT count(*) FROM pg_orders").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = client
        .simple_query("SELECT count(*) FROM pg_orders")
        .await
        .expect_err("the only connection is busy");
    assert_eq!(sqlstate(&err), "53300", "{err:?}");
    let err = blocked
        .await
        .unwrap()
        .expect_err("source statement timeout");
    assert_eq!(sqlstate(&err), "57014", "{err:?}");

    locker.batch_execute("ROLLBACK").await.expect("unlock");
    drop(shop);
}

#[tokio::test]
async fn a_client_cancel_cancels_the_statement_on_postgres() {
    let shop = Shop::create().await;
    let server = TestServer::with_config(shop.config("")).await;
    let admin = shop.db.pg().await;
    admin
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let client = server.connect("carol").await;
    let token = client.cancel_token();
    let running =
        tokio::spawn(async move { client.simple_query("SELECT count(*) FROM pg_orders").await });
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND application_name = 'biproxy' AND state = 'active'";
    let observer = shop.db.pg().await;
    let count = |sql: &'static str| {
        let observer = &observer;
        async move {
            observer
                .query_one(sql, &[])
                .await
                .expect("pg_stat_activity")
                .get::<_, i64>(0)
        }
    };
    let mut seen = 0;
    for _ in 0..50 {
        seen = count(waiting).await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 1, "the pushed statement is waiting on PostgreSQL");
    token.cancel_query(NoTls).await.expect("send cancel");
    let err = running.await.unwrap().expect_err("canceled");
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    for _ in 0..50 {
        seen = count(waiting).await;
        if seen == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 0, "the statement no longer runs on PostgreSQL");
    admin.batch_execute("ROLLBACK").await.expect("unlock");
    drop(shop);
}

#[tokio::test]
async fn a_source_that_comes_back_is_served_without_a_restart() {
    let shop = Shop::create().await;
    let late = shop.db.late();
    let text = format!(
        "{}\n[[source]]\nname = \"late_pg\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\n\
         database = \"{late}\"\nuser = \"postgres\"\npassword = \"\"\nretry_interval = \"200ms\"\n\n\
         [[dataset]]\nworkspace = \"demo\"\nname = \"late_orders\"\nsource = \"late_pg\"\ntable = \"orders\"\n",
        demo_config_text("")
    );
    let config = config::parse(&text, "late.toml", std::path::Path::new(".")).expect("config");
    let server = TestServer::with_config(config).await;
    let open = server.connect("alice").await;
    let err = open
        .simple_query("SELECT count(*) FROM late_orders")
        .await
        .expect_err("the database does not exist yet");
    assert_eq!(sqlstate(&err), "08001", "{err:?}");
    shop.db
        .create_late(
            "CREATE TABLE orders (id int, amount numeric(8,2)); \
                      INSERT INTO orders VALUES (1, 2.50), (2, 4.00);",
        )
        .await;
    // The session opened while the source was down sees it come back.
    let mut last = None;
    for _ in 0..100 {
        match open
            .simple_query("SELECT count(*), sum(amount) FROM late_orders")
            .await
        {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => {
                assert_eq!(sqlstate(&e), "08001", "{e:?}");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(last.is_none(), "still unavailable after 10 s: {last:?}");
    assert_eq!(
        rows(&open, "SELECT count(*), sum(amount) FROM late_orders").await,
        table(&[["2", "6.50"]])
    );
    // A new session too.
    let fresh = server.connect("bob").await;
    assert_eq!(
        rows(&fresh, "SELECT id FROM late_orders ORDER BY id").await,
        table(&[["1"], ["2"]])
    );
    drop(shop);
}

#[tokio::test]
async fn terminated_source_connections_are_replaced() {
    let shop = Shop::create().await;
    let server = TestServer::with_config(shop.config("pool_size = 2")).await;
    let client = server.connect("alice").await;
    let count = "SELECT count(*) FROM pg_orders";
    assert_eq!(rows(&client, count).await, table(&[["4"]]));
    let admin = shop.db.pg().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'biproxy'",
            &[],
        )
        .await
        .expect("terminate biproxy's connections")
        .get(0);
    assert!(killed >= 1, "biproxy kept a pooled connection open");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The pool notices the closed connections and opens new ones.
    assert_eq!(rows(&client, count).await, table(&[["4"]]));
    assert_eq!(rows(&client, count).await, table(&[["4"]]));
    drop(shop);
}

#[tokio::test]
async fn a_sql_dataset_on_a_database_runs_there() {
    let shop = Shop::create().await;
    let text = format!(
        "{}\n{}\n[[dataset]]\nworkspace = \"demo\"\nname = \"big_orders\"\nsource = \"shop_pg\"\n\
         sql = \"SELECT order_id, customer_id, amount * 2 AS doubled FROM orders WHERE amount > 50\"\n",
        demo_config_text(""),
        shop.db.sources_toml("shop_pg", "shop_my", ""),
    );
    let config = config::parse(&text, "sql.toml", std::path::Path::new(".")).expect("config");
    let server = TestServer::with_config(config).await;
    let client = server.connect("alice").await;
    let sql = "SELECT customer_id, sum(doubled) FROM big_orders GROUP BY customer_id ORDER BY customer_id";
    assert_eq!(
        rows(&client, sql).await,
        table(&[["10", "201.00"], ["20", "1999999999.98"]])
    );
    let plan = explain(&client, sql).await;
    let pushed: Vec<&str> = plan.lines().filter(|l| l.contains("sql=")).collect();
    assert_eq!(pushed.len(), 1, "one statement:\n{plan}");
    for part in ["WHERE", "> 50", "* 2", "GROUP BY", "ORDER BY"] {
        assert!(pushed[0].contains(part), "{part} is pushed down:\n{plan}");
    }
    drop(shop);
}

#[tokio::test]
async fn limit_with_offset_on_postgres_returns_the_right_rows() {
    let shop = Shop::create().await;
    let server = TestServer::with_config(shop.config("")).await;
    let client = server.connect("alice").await;
    let sql = "SELECT order_id FROM pg_orders ORDER BY order_id DESC LIMIT 2 OFFSET 1";
    assert_eq!(rows(&client, sql).await, table(&[["3"], ["2"]]));
    let plan = explain(&client, sql).await;
    assert!(plan.contains("LIMIT"), "{plan}");
    drop(shop);
}

#[tokio::test]
async fn a_sql_server_that_cannot_be_reached_answers_08001_naming_it() {
    // Nothing listens on port 1; PostgreSQL's port answers in another protocol.
    for (port, reason) in [(1, "127.0.0.1:1"), (5432, "")] {
        let text = format!(
            "{}\n[[source]]\nname = \"mssql\"\nkind = \"sqlserver\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             database = \"sales\"\nuser = \"sa\"\npassword = \"secret\"\nconnect_timeout = \"2s\"\n\n\
             [[dataset]]\nworkspace = \"demo\"\nname = \"ms_orders\"\nsource = \"mssql\"\ntable = \"orders\"\n",
            demo_config_text("")
        );
        let config = config::parse(&text, "mssql.toml", std::path::Path::new(".")).expect("config");
        let server = TestServer::with_config(config).await;
        let client = server.connect("alice").await;
        let err = client
            .simple_query("SELECT count(*) FROM ms_orders")
            .await
            .expect_err("no SQL Server there");
        assert_eq!(sqlstate(&err), "08001", "port {port}: {err:?}");
        let message = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(
            message.contains("mssql") && message.contains(reason),
            "port {port}: {message}"
        );
        // The other datasets are served.
        assert_eq!(
            rows(&client, "SELECT count(*) FROM stores WHERE store_id = 1").await,
            table(&[["1"]])
        );
    }
}
