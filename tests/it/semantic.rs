//! Datasets' measures (`MEASURE(name)`) and the `biproxy` schema that describes the model.

use std::path::Path;

use crate::support::{demo_dir, direct, rows, sqlstate, table, TestServer};

#[tokio::test]
async fn measures_by_region_equal_hand_written_aggregates_on_the_raw_files() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let got = rows(
        &client,
        "SELECT region, MEASURE(revenue), MEASURE(orders), MEASURE(customers), MEASURE(units) \
         FROM sales GROUP BY region ORDER BY region",
    )
    .await;
    let want = direct(
        "SELECT c.region, sum(o.amount), count(*), count(DISTINCT o.customer_id), sum(o.quantity) \
         FROM orders o JOIN customers c ON o.customer_id = c.customer_id \
         GROUP BY c.region ORDER BY c.region",
    )
    .await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn count_distinct_measure_is_computed_from_rows_not_summed_across_groups() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let total = rows(&client, "SELECT MEASURE(customers) FROM sales").await;
    let by_region: i64 = rows(
        &client,
        "SELECT MEASURE(customers) FROM sales GROUP BY region",
    )
    .await
    .iter()
    .map(|r| r[0].parse::<i64>().unwrap())
    .sum();
    let want = direct("SELECT count(DISTINCT customer_id) FROM orders").await;
    assert_eq!(total, want);
    // Customers live in one region each here, so the per-region counts add up; the
    // point is that the total is its own count, not a sum of partial results.
    assert_eq!(by_region.to_string(), want[0][0]);
}

#[tokio::test]
async fn derived_measures_are_ratios_of_sums() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let got = rows(
        &client,
        "SELECT region, MEASURE(gross_profit), round(CAST(MEASURE(margin) AS double), 6) \
         FROM sales GROUP BY region ORDER BY region",
    )
    .await;
    let want = direct(
        "SELECT c.region, sum(o.amount) - sum(o.cost), \
                round(CAST((sum(o.amount) - sum(o.cost)) / sum(o.amount) AS double), 6) \
         FROM orders o JOIN customers c ON o.customer_id = c.customer_id \
         GROUP BY c.region ORDER BY c.region",
    )
    .await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn calculated_fields_are_columns() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let got = rows(
        &client,
        "SELECT price_band, count(*), sum(profit) FROM sales GROUP BY price_band ORDER BY price_band",
    )
    .await;
    let want = direct(
        "SELECT CASE WHEN unit_price < 100 THEN '低价' WHEN unit_price < 1000 THEN '中价' ELSE '高价' END AS b, \
                count(*), sum(amount - cost) FROM orders GROUP BY b ORDER BY b",
    )
    .await;
    assert_eq!(got, want);
    let described = rows(
        &client,
        "SELECT expression, label FROM biproxy.columns WHERE dataset = 'sales' AND column_name = 'profit'",
    )
    .await;
    assert_eq!(
        described,
        vec![vec!["amount - cost".to_owned(), "利润".to_owned()]]
    );
}

#[tokio::test]
async fn measure_columns_are_named_after_the_measure_and_aliases_work() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let stmt = client
        .prepare("SELECT s.region, MEASURE(s.revenue), MEASURE(avg_price) AS p FROM sales s GROUP BY s.region")
        .await
        .unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["region", "revenue", "p"]);
}

#[tokio::test]
async fn unknown_or_malformed_measures_are_errors() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let err = client
        .simple_query("SELECT MEASURE(profit) FROM sales")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42703");
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "measure \"profit\" does not exist in sales"
    );
    let err = client
        .simple_query("SELECT MEASURE(revenue, 1) FROM sales")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42601");
    let err = client
        .simple_query("SELECT MEASURE(revenue) FROM stores")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42703");
}

#[tokio::test]
async fn the_biproxy_schema_describes_the_model() {
    let server = TestServer::start().await;
    // An analyst sees the whole model (dave, a viewer, would not see `cost`'s measure).
    let client = server.connect("alice").await;
    let measures = rows(
        &client,
        "SELECT measure, aggregation, column_name, label FROM biproxy.measures \
         WHERE dataset = 'sales' ORDER BY measure",
    )
    .await;
    assert_eq!(
        measures,
        table(&[
            ["avg_price", "avg", "unit_price", "平均单价"],
            ["customers", "count_distinct", "customer_id", "客户数"],
            ["gross_profit", "derived", "", "毛利"],
            ["margin", "derived", "", "毛利率"],
            ["orders", "count", "", "订单数"],
            ["revenue", "sum", "amount", "销售额"],
            ["total_cost", "sum", "cost", "成本"],
            ["units", "sum", "quantity", "件数"],
        ])
    );
    let columns = rows(
        &client,
        "SELECT column_name, data_type, label FROM biproxy.columns \
         WHERE dataset = 'sales' AND column_name IN ('region', 'amount', 'order_date') ORDER BY column_name",
    )
    .await;
    assert_eq!(
        columns,
        table(&[
            ["amount", "numeric", "金额"],
            ["order_date", "date", ""],
            ["region", "text", "大区"]
        ])
    );
    let datasets = rows(
        &client,
        "SELECT dataset FROM biproxy.datasets ORDER BY dataset",
    )
    .await;
    assert_eq!(
        datasets,
        table(&[["customers"], ["products"], ["sales"], ["stores"]])
    );
}

#[tokio::test]
async fn a_measure_or_column_doc_on_a_missing_column_is_a_config_error_with_its_line() {
    let text = format!(
        r#"[[source]]
name = "lake"
kind = "lake"
path = {path:?}

[[workspace]]
name = "w"

[[dataset]]
workspace = "w"
name = "stores"
source = "lake"
table = "stores"

[[dataset.measure]]
name = "n"
agg = "count_distinct"
column = "store_nam"

[[dataset.column]]
name = "nope"
"#,
        path = demo_dir().display().to_string()
    );
    let config = biproxy::config::parse(&text, "model.toml", Path::new(".")).unwrap();
    let err = model_error(&config).await;
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("model.toml:18: dataset \"stores\".measure \"n\".column: dataset \"stores\" has no column \"store_nam\"; it has: store_id, store_name"),
        "{err}"
    );
    assert!(lines[1].starts_with("model.toml:21: dataset \"stores\".column.name: dataset \"stores\" has no column \"nope\""), "{err}");
}

fn model_with(extra: &str) -> biproxy::config::Config {
    biproxy::config::parse(&model_text(extra), "model.toml", Path::new(".")).unwrap()
}

/// The error that building `config`'s model gives, as the server prints it.
async fn model_error(config: &biproxy::config::Config) -> String {
    biproxy::semantic::build(config, false)
        .await
        .expect_err("the model is refused")
        .to_string()
}

fn model_text(extra: &str) -> String {
    format!(
        "[[source]]\nname = \"lake\"\nkind = \"lake\"\npath = {path:?}\n\n\
         [[workspace]]\nname = \"w\"\n\n\
         [[dataset]]\nworkspace = \"w\"\nname = \"orders\"\nsource = \"lake\"\ntable = \"orders\"\n{extra}",
        path = demo_dir().display().to_string()
    )
}

#[tokio::test]
async fn cycles_and_type_errors_in_the_model_are_reported_with_their_lines() {
    // `extra` starts at line 14; errors point at the `expr` line.
    let config = model_with(
        "\n[[dataset.field]]\nname = \"a\"\nexpr = \"b + 1\"\n\n\
         [[dataset.field]]\nname = \"b\"\nexpr = \"a * 2\"\n",
    );
    let err = model_error(&config).await;
    assert_eq!(
        err,
        "model.toml:17: dataset \"orders\".field \"a\".expr: calculated fields form a cycle: a → b → a"
    );

    let config = model_with("\n[[dataset.field]]\nname = \"bad\"\nexpr = \"order_date * 2\"\n");
    let err = model_error(&config).await;
    assert!(
        err.starts_with("model.toml:17: dataset \"orders\".field \"bad\".expr: "),
        "{err}"
    );

    let config = model_with(
        "\n[[dataset.measure]]\nname = \"x\"\nexpr = \"MEASURE(y) + 1\"\n\n\
         [[dataset.measure]]\nname = \"y\"\nexpr = \"MEASURE(x) / MEASURE(nope)\"\n",
    );
    let err = model_error(&config).await;
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "model.toml:21: dataset \"orders\".measure \"y\".expr: no measure \"nope\" in dataset \"orders\"",
            "model.toml:17: dataset \"orders\".measure \"x\".expr: derived measures form a cycle: x → y → x",
        ]
    );
}

#[tokio::test]
async fn time_dimensions_offer_granularity_columns() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let got = rows(
        &client,
        "SELECT order_date_month, MEASURE(revenue) FROM sales \
         WHERE order_date_year = DATE '2024-01-01' GROUP BY order_date_month ORDER BY 1",
    )
    .await;
    let want = direct(
        "SELECT CAST(date_trunc('month', order_date) AS DATE) AS m, sum(amount) FROM orders \
         WHERE order_date >= DATE '2024-01-01' GROUP BY m ORDER BY m",
    )
    .await;
    assert_eq!(got.len(), 12);
    assert_eq!(got, want);
    let stmt = client
        .prepare("SELECT order_date_week, order_date_quarter, order_ts_hour FROM sales LIMIT 1")
        .await
        .unwrap();
    let types: Vec<&str> = stmt.columns().iter().map(|c| c.type_().name()).collect();
    assert_eq!(types, ["date", "date", "timestamptz"]);
}

#[tokio::test]
async fn dimensions_and_hierarchies_are_listed() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    let dims = rows(
        &client,
        "SELECT dimension, type, granularities, geo_role FROM biproxy.dimensions \
         WHERE dataset = 'sales' ORDER BY dimension",
    )
    .await;
    assert_eq!(
        dims,
        table(&[
            ["brand", "plain", "", ""],
            ["category", "plain", "", ""],
            ["city", "geo", "", "city"],
            ["department", "plain", "", ""],
            ["order_date", "time", "year,quarter,month,week,day", ""],
            ["order_ts", "time", "hour", ""],
            ["province", "geo", "", "province"],
            ["region", "plain", "", ""],
        ])
    );
    let levels = rows(
        &client,
        "SELECT hierarchy, level, position FROM biproxy.hierarchies ORDER BY hierarchy, position",
    )
    .await;
    assert_eq!(
        levels,
        table(&[
            ["geography", "region", "1"],
            ["geography", "province", "2"],
            ["geography", "city", "3"],
            ["product_line", "department", "1"],
            ["product_line", "category", "2"],
            ["product_line", "brand", "3"]
        ])
    );
}

#[tokio::test]
async fn dimension_mistakes_are_config_errors_with_their_lines() {
    // `extra` starts at line 14.
    let config = model_with("\n[[dataset.dimension]]\nname = \"customer_id\"\ntype = \"time\"\n");
    let err = model_error(&config).await;
    assert_eq!(
        err,
        "model.toml:16: dataset \"orders\".dimension \"customer_id\": \
         a time dimension must be a date or timestamp, not Int64"
    );
    let config = model_with("\n[[dataset.dimension]]\nname = \"order_date\"\ntype = \"time\"\ngranularities = [\"hour\"]\n");
    let err = model_error(&config).await;
    assert_eq!(
        err,
        "model.toml:16: dataset \"orders\".dimension \"order_date\": `hour` needs a timestamp; this column is a date"
    );
    let errors = biproxy::config::parse(
        &model_text("\n[[dataset.dimension]]\nname = \"order_date\"\n\n[[dataset.hierarchy]]\nname = \"h\"\nlevels = [\"order_date\", \"nope\"]\n"),
        "model.toml",
        Path::new("."),
    )
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "model.toml:20: dataset[0].hierarchy[0].levels[1]: no [[dataset.dimension]] named \"nope\" in this dataset"
    );
}

/// The physical plan of a query, as `EXPLAIN` shows it through biproxy.
async fn physical_plan(client: &tokio_postgres::Client, sql: &str) -> String {
    rows(client, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .filter(|r| r[0] == "physical_plan")
        .map(|r| r[1].clone())
        .collect()
}

#[tokio::test]
async fn star_joins_are_pruned_when_no_dimension_column_is_used() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    // (query, the tables its plan reads): every other table's join is pruned.
    let cases: [(&str, &[&str]); 5] = [
        (
            "SELECT count(*), sum(amount) FROM sales WHERE quantity > 2",
            &["orders"],
        ),
        (
            "SELECT region, MEASURE(revenue) FROM sales GROUP BY region",
            &["orders", "customers"],
        ),
        (
            "SELECT count(*) FROM sales WHERE channel = 'Online'",
            &["orders", "stores"],
        ),
        // A snowflake: categories is joined through products, and only when it is used.
        (
            "SELECT category, count(*) FROM sales GROUP BY category",
            &["orders", "products"],
        ),
        (
            "SELECT department, count(*) FROM sales GROUP BY department",
            &["orders", "products", "categories"],
        ),
    ];
    for (sql, read) in cases {
        let plan = physical_plan(&client, sql).await;
        for table in ["orders", "customers", "products", "stores", "categories"] {
            assert_eq!(
                plan.contains(&format!("{table}/")),
                read.contains(&table),
                "{table} in the plan of {sql}:\n{plan}"
            );
        }
    }
    // Pruned or not, the answers are those of the full join.
    let got = rows(
        &client,
        "SELECT count(*), sum(amount) FROM sales WHERE quantity > 2",
    )
    .await;
    let want = direct(
        "SELECT count(*), sum(o.amount) FROM orders o \
         LEFT JOIN customers c ON o.customer_id = c.customer_id \
         LEFT JOIN products p ON o.product_id = p.product_id \
         LEFT JOIN stores s ON o.store_id = s.store_id WHERE o.quantity > 2",
    )
    .await;
    assert_eq!(got, want);
    let got = rows(
        &client,
        "SELECT channel, count(*) FROM sales WHERE channel = 'Online' GROUP BY channel",
    )
    .await;
    let want = direct(
        "SELECT s.channel, count(*) FROM orders o JOIN stores s ON o.store_id = s.store_id \
         WHERE s.channel = 'Online' GROUP BY s.channel",
    )
    .await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn join_mistakes_are_config_errors_with_their_lines() {
    // `extra` starts at line 14; the join's `table` is on line 16.
    let config = model_with("\n[[dataset.join]]\ntable = \"customers\"\nkey = \"order_date\"\ndimension_key = \"customer_id\"\n");
    let err = model_error(&config).await;
    assert_eq!(
        err,
        "model.toml:16: dataset \"orders\".join \"customers\": join keys have incompatible types: \
         orders.order_date is Date32, customers.customer_id is Int64"
    );
    let config = model_with("\n[[dataset.join]]\ntable = \"nope\"\nkey = \"customer_id\"\n");
    let err = model_error(&config).await;
    assert!(err.starts_with("model.toml:16: dataset \"orders\".join \"nope\": source \"lake\" has no table \"nope\""), "{err}");
    // A snowflake join must come from a table joined before it; each table joins once.
    let err = biproxy::config::parse(
        &model_text(
            "\n[[dataset.join]]\ntable = \"categories\"\nfrom = \"products\"\nkey = \"category\"\n\n\
             [[dataset.join]]\ntable = \"orders\"\nkey = \"order_id\"\n",
        ),
        "model.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "model.toml:17: dataset[0].join[0].from: \"products\" is neither the dataset's table nor a table joined before this one\n\
         model.toml:21: dataset[0].join[1].table: table \"orders\" is already part of the dataset; each table can be joined once"
    );
    // A snowflake key is checked against the table it joins from.
    let config = model_with(
        "\n[[dataset.join]]\ntable = \"products\"\nkey = \"product_id\"\ncolumns = [\"category\"]\n\n\
         [[dataset.join]]\ntable = \"categories\"\nfrom = \"products\"\nkey = \"product_id\"\ndimension_key = \"category\"\n",
    );
    let err = model_error(&config).await;
    assert_eq!(
        err,
        "model.toml:21: dataset \"orders\".join \"categories\": join keys have incompatible types: \
         products.product_id is Int64, categories.category is Utf8View"
    );
}

#[tokio::test]
async fn every_measure_by_every_dimension_equals_the_raw_aggregate() {
    let server = TestServer::start().await;
    let client = server.connect("carol").await;
    // (measure, the same aggregate over the raw tables o/c/p/k/s)
    let measures = [
        ("revenue", "sum(o.amount)"),
        ("total_cost", "sum(o.cost)"),
        ("orders", "count(*)"),
        ("customers", "count(DISTINCT o.customer_id)"),
        ("units", "sum(o.quantity)"),
        ("avg_price", "avg(o.unit_price)"),
        ("gross_profit", "sum(o.amount) - sum(o.cost)"),
    ];
    // (dimension column of the dataset, the same expression over the raw tables)
    let dimensions = [
        ("region", "c.region"),
        ("province", "c.province"),
        ("city", "c.city"),
        ("segment", "c.segment"),
        ("category", "p.category"),
        ("brand", "p.brand"),
        ("channel", "s.channel"),
        ("department", "k.department"),
        ("category_manager", "k.category_manager"),
        ("order_date_quarter", "CAST(date_trunc('quarter', o.order_date) AS DATE)"),
        ("price_band", "CASE WHEN o.unit_price < 100 THEN '低价' WHEN o.unit_price < 1000 THEN '中价' ELSE '高价' END"),
    ];
    for (dim, raw_dim) in dimensions {
        for (measure, raw_agg) in measures {
            let got = rows(
                &client,
                &format!("SELECT {dim}, CAST(MEASURE({measure}) AS VARCHAR) FROM sales GROUP BY {dim} ORDER BY {dim}"),
            )
            .await;
            let want = direct(&format!(
                "SELECT {raw_dim} AS d, CAST({raw_agg} AS VARCHAR) FROM orders o \
                 JOIN customers c ON o.customer_id = c.customer_id \
                 JOIN products p ON o.product_id = p.product_id \
                 JOIN categories k ON p.category = k.category \
                 JOIN stores s ON o.store_id = s.store_id GROUP BY d ORDER BY d"
            ))
            .await;
            assert_eq!(got, want, "MEASURE({measure}) by {dim}");
        }
    }
}
