//! Accelerated datasets and rollups over a real socket: refresh swaps atomically under
//! concurrent queries, a failed refresh keeps the old copy, policies hold on the copy, and
//! rollups give exactly the rows of the unaccelerated query over many generated shapes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::admin::{request, wait_ready};
use crate::support::databases::Databases;
use crate::support::{demo_config_text, explain, rows, sqlstate, try_rows, TestServer};

/// The demo config with the `sales` dataset accelerated and given two rollups.
fn accelerated_demo() -> biproxy::config::Config {
    let accel = r#"
[dataset.acceleration]

[[dataset.rollup]]
name = "by_day"
dimensions = ["region", "category", "channel", "order_date_day"]
measures = ["revenue", "orders", "units", "customers", "avg_price", "margin"]

[[dataset.rollup]]
name = "by_region"
dimensions = ["region", "segment"]
measures = ["revenue", "orders", "customers"]
"#;
    let marker = "[[dataset]]\nworkspace = \"demo\"\nname = \"customers\"";
    let text = demo_config_text("").replacen(marker, &format!("{accel}\n{marker}"), 1);
    assert!(
        text.contains("by_region"),
        "the demo config still has a customers dataset"
    );
    let text = format!("{text}\n");
    biproxy::config::parse(&text, "accel.toml", std::path::Path::new(".")).expect("valid config")
}

/// A PostgreSQL database with `facts(id, v)`, 1000 rows of `v = 1`, and a server whose
/// dataset `facts` is an accelerated copy of it, rebuilt every `refresh`.
async fn facts_server(refresh: &str) -> (Databases, TestServer) {
    let db = Databases::create().await;
    db.pg()
        .await
        .batch_execute(
            "CREATE TABLE facts (id int, v int);
             INSERT INTO facts SELECT g, 1 FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();
    let text = format!(
        "{}\n{}\n[[dataset]]\nworkspace = \"demo\"\nname = \"facts\"\nsource = \"pg\"\ntable = \"facts\"\n\
         [dataset.acceleration]\nrefresh = \"{refresh}\"\n",
        demo_config_text(""),
        db.sources_toml("pg", "my", "")
    );
    let config = biproxy::config::parse(&text, "facts.toml", std::path::Path::new(".")).unwrap();
    let server = TestServer::with_config(config).await;
    wait_ready(server.admin.unwrap(), 1).await;
    (db, server)
}

/// Set every `v` of the source's `facts` to 2 and refresh the copy; the refresh's answer.
async fn set_v_and_refresh(db: &Databases, server: &TestServer) -> String {
    db.pg()
        .await
        .batch_execute("UPDATE facts SET v = 2")
        .await
        .unwrap();
    let (status, body) = request(
        server.admin.unwrap(),
        "POST",
        "/accelerations/refresh?workspace=demo&dataset=facts",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_refresh_swaps_the_copy_atomically_under_concurrent_queries() {
    let (db, server) = facts_server("0").await;
    let q = "SELECT count(*), sum(v) FROM facts";
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let client = server.connect("carol").await;
        rows(&client, "SET biproxy.cache = off").await;
        let stop = Arc::clone(&stop);
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = try_rows(&client, q)
                    .await
                    .expect("no query fails during a refresh");
                seen.push((r[0][0].clone(), r[0][1].clone()));
            }
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let body = set_v_and_refresh(&db, &server).await;
    assert!(body.contains("\"version\":2"), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (old, new) = (
        ("1000".to_owned(), "1000".to_owned()),
        ("1000".to_owned(), "2000".to_owned()),
    );
    for r in readers {
        let seen = r.await.unwrap();
        assert!(seen.len() > 2, "the readers ran");
        // Each reader saw the old copy, then the new one, and nothing in between.
        let switch = seen
            .iter()
            .position(|s| s == &new)
            .expect("the new copy answers");
        assert!(seen[..switch].iter().all(|s| s == &old), "{seen:?}");
        assert!(seen[switch..].iter().all(|s| s == &new), "{seen:?}");
    }
    let client = server.connect("carol").await;
    let plan = explain(&client, q).await;
    assert!(plan.contains("facts (accelerated copy v2)"), "{plan}");
    assert!(!plan.contains("base_sql"), "the source is not read: {plan}");
}

#[tokio::test]
async fn a_statement_prepared_before_a_refresh_reads_the_new_copy() {
    let (db, server) = facts_server("0").await;
    let client = server.connect("carol").await;
    rows(&client, "SET biproxy.cache = off").await;
    let stmt = client
        .prepare("SELECT count(*), sum(v) FROM facts WHERE id > $1")
        .await
        .unwrap();
    let answer = |row: tokio_postgres::Row| (row.get::<_, i64>(0), row.get::<_, i64>(1));
    assert_eq!(
        answer(client.query_one(&stmt, &[&0i32]).await.unwrap()),
        (1000, 1000)
    );
    set_v_and_refresh(&db, &server).await;
    // Planned against copy v1, executed after v2 replaced it: the rows of v2.
    assert_eq!(
        answer(client.query_one(&stmt, &[&0i32]).await.unwrap()),
        (1000, 2000)
    );
    assert_eq!(
        answer(client.query_one(&stmt, &[&500i32]).await.unwrap()),
        (500, 1000)
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_serving_the_old_copy() {
    let (db, server) = facts_server("0").await;
    let client = server.connect("carol").await;
    let q = "SELECT count(*), sum(v) FROM facts";
    assert_eq!(rows(&client, q).await, vec![vec!["1000", "1000"]]);
    db.pg()
        .await
        .batch_execute("ALTER TABLE facts RENAME TO facts_gone")
        .await
        .unwrap();
    let admin = server.admin.unwrap();
    let path = "/accelerations/refresh?workspace=demo&dataset=facts";
    let (status, body) = request(admin, "POST", path).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("reading dataset \\\"facts\\\" from its source failed"),
        "{body}"
    );
    rows(&client, "SET biproxy.cache = off").await;
    assert_eq!(rows(&client, q).await, vec![vec!["1000", "1000"]]);
    let (_, status) = request(admin, "GET", "/accelerations").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status[0]["state"], "ready");
    assert_eq!(status[0]["version"], 1);
    assert_eq!(status[0]["failures"], 1);
    assert!(status[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("facts")));
    // The source comes back: the next refresh succeeds.
    db.pg()
        .await
        .batch_execute("ALTER TABLE facts_gone RENAME TO facts; UPDATE facts SET v = 3")
        .await
        .unwrap();
    let (status, body) = request(admin, "POST", path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(&client, q).await, vec![vec!["1000", "3000"]]);
    let (status, _) = request(
        admin,
        "POST",
        "/accelerations/refresh?workspace=demo&dataset=sales",
    )
    .await;
    assert_eq!(status, 404, "sales is not accelerated here");
}

/// The queries the differential test runs: group-bys over the rollups' dimensions (and
/// some that no rollup has), every kind of measure, and filters.
fn shapes() -> Vec<String> {
    let groups: &[&[&str]] = &[
        &[],
        &["region"],
        &["category"],
        &["region", "category"],
        &["order_date_month"],
        &["order_date_year", "channel"],
        &["region", "category", "channel", "order_date_day"],
        &["order_date_quarter", "region"],
        &["segment"],
        &["region", "segment"],
        &["brand"],
        &["customer_name"],
    ];
    let measures: &[&str] = &[
        "MEASURE(revenue), MEASURE(orders)",
        "MEASURE(units), min(amount), max(amount)",
        "MEASURE(customers), MEASURE(avg_price)",
        "MEASURE(margin), count(*)",
        "MEASURE(units), MEASURE(orders)",
    ];
    let filters: &[&str] = &[
        "",
        "WHERE region <> 'Central'",
        "WHERE order_date_year = DATE '2024-01-01' AND category IN ('Home', 'Sports')",
        "WHERE quantity > 5",
    ];
    let mut out = Vec::new();
    for g in groups {
        for m in measures {
            for f in filters {
                let cols = g.join(", ");
                let (select, group, order) = if g.is_empty() {
                    (String::new(), String::new(), String::new())
                } else {
                    (
                        format!("{cols}, "),
                        format!(" GROUP BY {cols}"),
                        format!(" ORDER BY {cols}"),
                    )
                };
                out.push(format!("SELECT {select}{m} FROM sales {f}{group}{order}"));
            }
        }
    }
    out
}

#[tokio::test]
async fn rollups_and_the_copy_give_exactly_the_rows_of_the_source() {
    let plain = TestServer::start().await;
    let fast = TestServer::with_config(accelerated_demo()).await;
    wait_ready(fast.admin.unwrap(), 1).await;
    let mut from_rollup = 0;
    let mut checks = 0;
    for user in ["alice", "bob", "carol", "dave"] {
        let expected_client = plain.connect(user).await;
        let client = fast.connect(user).await;
        rows(&client, "SET biproxy.cache = off").await;
        rows(&expected_client, "SET biproxy.cache = off").await;
        for q in shapes() {
            let expected = try_rows(&expected_client, &q).await;
            let got = try_rows(&client, &q).await;
            match (expected, got) {
                (Ok(e), Ok(g)) => assert_eq!(g, e, "{user}: {q}"),
                (Err(e), Err(g)) => assert_eq!(sqlstate(&g), sqlstate(&e), "{user}: {q}"),
                (e, g) => panic!("{user}: {q}: expected {e:?}, got {g:?}"),
            }
            checks += 1;
            if user == "carol" && explain(&client, &q).await.contains("rollup") {
                from_rollup += 1;
            }
        }
    }
    assert_eq!(checks, 4 * 12 * 5 * 4);
    eprintln!("{checks} checks; {from_rollup} of carol's 240 shapes answered from a rollup");
    // Exactly which shapes a rollup answers is the matcher's business; that many do, and
    // that these do and do not, is the point.
    assert!(
        from_rollup >= 40,
        "only {from_rollup} of 192 shapes used a rollup"
    );
    let carol = fast.connect("carol").await;
    let by_month = explain(
        &carol,
        "SELECT order_date_month, MEASURE(revenue) FROM sales GROUP BY 1",
    )
    .await;
    assert!(by_month.contains("sales rollup by_day (v1)"), "{by_month}");
    let exact = "SELECT region, segment, MEASURE(customers) FROM sales GROUP BY 1, 2";
    let exact = explain(&carol, exact).await;
    assert!(exact.contains("sales rollup by_region (v1)"), "{exact}");
    let coarse = explain(
        &carol,
        "SELECT region, MEASURE(customers) FROM sales GROUP BY 1",
    )
    .await;
    assert!(
        !coarse.contains("rollup"),
        "count(DISTINCT) is never re-aggregated from finer groups: {coarse}"
    );
    let brand = explain(
        &carol,
        "SELECT brand, MEASURE(revenue) FROM sales GROUP BY 1",
    )
    .await;
    assert!(!brand.contains("rollup"), "{brand}");
    assert!(brand.contains("sales (accelerated copy v1)"), "{brand}");
    // Alice's policy reads `region`, which both rollups keep: her answers come from one.
    let alice = fast.connect("alice").await;
    let plan = explain(
        &alice,
        "SELECT category, MEASURE(revenue) FROM sales GROUP BY 1",
    )
    .await;
    assert!(
        plan.contains("rollup by_day") && plan.contains("East"),
        "{plan}"
    );
}

#[tokio::test]
async fn until_the_first_copy_is_ready_the_source_answers() {
    let db = Databases::create().await;
    // Reading the view takes a second, so the first copy is not ready at once.
    db.pg()
        .await
        .batch_execute(
            "CREATE TABLE t (id int);
             INSERT INTO t SELECT g FROM generate_series(1, 100) g;
             CREATE VIEW slow AS SELECT t.id FROM t, (SELECT pg_sleep(1)) AS s;",
        )
        .await
        .unwrap();
    let text = format!(
        "{}\n{}\n[[dataset]]\nworkspace = \"demo\"\nname = \"slow\"\nsource = \"pg\"\ntable = \"slow\"\n\
         cache_ttl = \"0\"\n[dataset.acceleration]\n",
        demo_config_text(""),
        db.sources_toml("pg", "my", "")
    );
    let config = biproxy::config::parse(&text, "slow.toml", std::path::Path::new(".")).unwrap();
    let server = TestServer::with_config(config).await;
    let client = server.connect("carol").await;
    let q = "SELECT count(*), sum(id) FROM slow";
    let before = explain(&client, q).await;
    assert!(
        before.contains("base_sql"),
        "the source answers while loading: {before}"
    );
    assert_eq!(rows(&client, q).await, vec![vec!["100", "5050"]]);
    let status = wait_ready(server.admin.unwrap(), 1).await;
    assert_eq!(status[0]["rows"], 100);
    let after = explain(&client, q).await;
    assert!(after.contains("slow (accelerated copy v1)"), "{after}");
    assert_eq!(rows(&client, q).await, vec![vec!["100", "5050"]]);
}

#[tokio::test]
async fn a_copy_is_rebuilt_on_its_schedule() {
    let (db, server) = facts_server("1s").await;
    let client = server.connect("carol").await;
    rows(&client, "SET biproxy.cache = off").await;
    let q = "SELECT count(*), sum(v) FROM facts";
    db.pg()
        .await
        .batch_execute("INSERT INTO facts SELECT g, 5 FROM generate_series(1001, 1010) g")
        .await
        .unwrap();
    // A copy built after the insert has every row (one built before it may not).
    let mut version = 2;
    loop {
        let status = wait_ready(server.admin.unwrap(), version).await;
        if status[0]["rows"] == 1010 {
            break;
        }
        version = status[0]["version"].as_u64().unwrap() + 1;
        assert!(version < 6, "no copy with the new rows: {status}");
    }
    assert_eq!(rows(&client, q).await, vec![vec!["1010", "1050"]]);
}

#[tokio::test]
async fn rollup_mistakes_name_the_file_line_and_field() {
    let base = format!(
        "[[source]]\nname = \"lake\"\nkind = \"lake\"\npath = {:?}\n\n\
         [[workspace]]\nname = \"w\"\n\n\
         [[dataset]]\nworkspace = \"w\"\nname = \"orders\"\nsource = \"lake\"\ntable = \"orders\"\n",
        crate::support::demo_dir().display().to_string()
    );
    // Line 14 on: a measure, the acceleration, and two broken rollups (names on 23, 28).
    let extra = "\n[[dataset.measure]]\nname = \"revenue\"\nagg = \"sum\"\ncolumn = \"amount\"\n\n\
                 [dataset.acceleration]\n\n\
                 [[dataset.rollup]]\nname = \"r\"\ndimensions = [\"nope\"]\nmeasures = [\"revenue\"]\n\n\
                 [[dataset.rollup]]\nname = \"s\"\ndimensions = [\"store_id\"]\nmeasures = [\"missing\"]\n";
    let path = std::path::Path::new(".");
    let config = biproxy::config::parse(&format!("{base}{extra}"), "model.toml", path).unwrap();
    let err = biproxy::semantic::build(&config, false)
        .await
        .expect_err("the rollups are refused")
        .to_string();
    assert_eq!(
        err,
        "model.toml:23: dataset \"orders\".rollup \"r\": dataset has no column \"nope\" to group by\n\
         model.toml:28: dataset \"orders\".rollup \"s\": the dataset has no measure \"missing\""
    );
    let no_copy = extra.replace("[dataset.acceleration]\n", "");
    let err = biproxy::config::parse(&format!("{base}{no_copy}"), "model.toml", path)
        .expect_err("a rollup needs a copy")
        .to_string();
    assert_eq!(
        err,
        "model.toml:11: dataset[0].rollup: rollups are built from the local copy: add [dataset.acceleration]"
    );
}
