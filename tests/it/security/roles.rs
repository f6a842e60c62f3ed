//! What each role may name and see: grants, missing attributes, masked and hidden
//! columns, the catalogs, developers' raw tables, and policy mistakes in the config.

use crate::support::{demo_config_text, rows, sqlstate, table, TestServer};

#[tokio::test]
async fn grants_narrow_a_role_to_datasets() {
    let server = TestServer::start().await;
    let dave = server.connect("dave").await;
    for sql in [
        "SELECT count(*) FROM customers",
        "SELECT count(*) FROM products",
        "SELECT count(*) FROM public.stores",
        // Quoted names are case-sensitive, as in PostgreSQL: no such dataset.
        "SELECT count(*) FROM \"Sales\"",
        "SELECT count(*) FROM \"SALES\"",
    ] {
        let err = dave.simple_query(sql).await.expect_err("not granted");
        assert_eq!(sqlstate(&err), "42P01", "{sql}: {err:?}");
    }
    let listed = rows(
        &dave,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(listed, table(&[["sales"]]));
    let alice = server.connect("alice").await;
    let listed = rows(
        &alice,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(
        listed,
        table(&[["customers"], ["products"], ["sales"], ["stores"]])
    );
    // The admin sees every row, the analyst only their region's.
    let carol = server.connect("carol").await;
    let everyone = rows(&carol, "SELECT count(DISTINCT region) FROM sales").await;
    assert_eq!(everyone, table(&[["5"]]));
}

#[tokio::test]
async fn a_missing_attribute_denies_every_row() {
    let text = demo_config_text("").replace(
        "members = [\"alice\", \"bob\", \"carol\", \"dave\"]",
        "members = [\"alice\", \"bob\", \"carol\", \"dave\", \"erin\"]",
    ) + "\n[[user]]\nname = \"erin\"\npassword = \"SCRAM-SHA-256$4096:6dmuCThyMbwl51qi6gvKiQ==$7hYAUxD77nxzH8DylL6Omc0dChLHvHfqIOvfGnEAd9E=:bGFYL/z/qTH/z4eRKMqwinyAluGTpA+8sVQ9fpE/jgA=\"\n";
    let config =
        biproxy::config::parse(&text, "erin.toml", std::path::Path::new(".")).expect("config");
    let server = TestServer::with_config(config).await;
    // erin's verifier is alice's, so her password is "alice".
    let erin = server
        .try_connect("erin", "alice", "demo")
        .await
        .expect("erin logs in");
    assert_eq!(
        rows(&erin, "SELECT count(*) FROM sales").await,
        table(&[["0"]])
    );
    assert_eq!(
        rows(&erin, "SELECT count(*) FROM customers").await,
        table(&[["0"]])
    );
    // Datasets without policies are not affected.
    assert_ne!(
        rows(&erin, "SELECT count(*) FROM products").await,
        table(&[["0"]])
    );
}

#[tokio::test]
async fn policy_and_role_mistakes_are_config_errors_with_their_lines() {
    let base = demo_config_text("");
    let bad_filter = base.replace(
        "filter = \"region = {{user.region}}\"",
        "filter = \"amount + 1\"",
    );
    let config =
        biproxy::config::parse(&bad_filter, "p.toml", std::path::Path::new(".")).expect("parses");
    let err = biproxy::semantic::build(&config, false)
        .await
        .expect_err("a filter must be boolean")
        .to_string();
    let line = bad_filter
        .lines()
        .position(|l| l == "filter = \"amount + 1\"")
        .expect("the line")
        + 1;
    assert!(
        err.starts_with(&format!(
            "p.toml:{line}: dataset \"sales\".policy: a policy filter must be true or false"
        )),
        "{err}"
    );
    let bad_role = base.replace("carol = \"admin\"", "carol = \"boss\"");
    let err = biproxy::config::parse(&bad_role, "r.toml", std::path::Path::new("."))
        .expect_err("unknown role")
        .to_string();
    assert!(
        err.contains("workspace[0].roles.carol: unknown role \"boss\""),
        "{err}"
    );
    let bad_grant = base.replace("dave = [\"sales\"]", "dave = [\"nope\"]");
    let err = biproxy::config::parse(&bad_grant, "g.toml", std::path::Path::new("."))
        .expect_err("unknown dataset")
        .to_string();
    assert!(
        err.contains("workspace[0].grants.dave: no dataset \"nope\" in this workspace"),
        "{err}"
    );
}

#[tokio::test]
async fn columns_are_masked_or_hidden_for_chosen_roles() {
    let server = TestServer::start().await;
    let dave = server.connect("dave").await;
    let names = rows(
        &dave,
        "SELECT DISTINCT customer_name FROM sales ORDER BY 1 LIMIT 3",
    )
    .await;
    assert_eq!(names.len(), 3);
    for n in &names {
        assert!(
            n[0].starts_with("***") && n[0].chars().count() == 5,
            "{n:?}"
        );
    }
    // The mask is the value everywhere, also in filters: the real name matches nothing.
    let real = rows(
        &server.connect("carol").await,
        "SELECT customer_name FROM sales WHERE region = 'West' LIMIT 1",
    )
    .await;
    let by_real_name = format!(
        "SELECT count(*) FROM sales WHERE customer_name = '{}'",
        real[0][0]
    );
    assert_eq!(rows(&dave, &by_real_name).await, table(&[["0"]]));
    for sql in [
        "SELECT cost FROM sales",
        "SELECT sum(cost) FROM sales",
        "SELECT MEASURE(margin) FROM sales",
    ] {
        let err = dave.simple_query(sql).await.expect_err("hidden");
        assert_eq!(sqlstate(&err), "42703", "{sql}: {err:?}");
    }
    // An analyst sees names and costs as they are.
    let alice = server.connect("alice").await;
    let plain = rows(
        &alice,
        "SELECT customer_name, cost FROM sales ORDER BY order_id LIMIT 1",
    )
    .await;
    assert!(!plain[0][0].starts_with("***"), "{plain:?}");
}

#[tokio::test]
async fn catalogs_show_only_what_the_session_may_query() {
    let server = TestServer::start().await;
    let dave = server.connect("dave").await;
    let alice = server.connect("alice").await;
    let carol = server.connect("carol").await;
    let datasets = "SELECT relname FROM pg_catalog.pg_class \
                    WHERE relname IN ('sales', 'customers', 'products', 'stores') ORDER BY 1";
    assert_eq!(rows(&dave, datasets).await, table(&[["sales"]]));
    assert_eq!(
        rows(&alice, datasets).await,
        table(&[["customers"], ["products"], ["sales"], ["stores"]])
    );
    let tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1";
    assert_eq!(rows(&dave, tables).await, table(&[["sales"]]));
    // The hidden column is in no catalog for dave, and in every one for alice.
    let probes = [
        "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid \
         WHERE c.relname = 'sales' AND a.attname = 'cost'",
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'sales' AND column_name = 'cost'",
        "SELECT count(*) FROM biproxy.columns WHERE dataset = 'sales' AND column_name = 'cost'",
        "SELECT count(*) FROM biproxy.measures WHERE dataset = 'sales' AND column_name = 'cost'",
        // Derived from a measure over `cost`: unusable for dave, so not listed.
        "SELECT count(*) FROM biproxy.measures WHERE dataset = 'sales' AND measure = 'margin'",
    ];
    for sql in probes {
        assert_eq!(rows(&dave, sql).await, table(&[["0"]]), "{sql}");
        assert_eq!(rows(&alice, sql).await, table(&[["1"]]), "{sql}");
    }
    // Ungranted datasets are absent from the model schema, their comments from
    // pg_description (looked up by the object id the admin sees).
    for sql in [
        "SELECT count(*) FROM biproxy.datasets WHERE dataset = 'customers'",
        "SELECT count(*) FROM biproxy.columns WHERE dataset = 'customers'",
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'customers'",
    ] {
        assert_eq!(rows(&dave, sql).await, table(&[["0"]]), "{sql}");
    }
    let oid = rows(
        &carol,
        "SELECT oid FROM pg_class WHERE relname = 'customers'",
    )
    .await;
    let described = format!(
        "SELECT count(*) FROM pg_description WHERE objoid = {}",
        oid[0][0]
    );
    assert_ne!(rows(&carol, &described).await, table(&[["0"]]));
    assert_eq!(rows(&dave, &described).await, table(&[["0"]]));
    // The columns dave may query are all listed.
    assert_eq!(
        rows(
            &dave,
            "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid \
             WHERE c.relname = 'sales' AND a.attname = 'customer_name'"
        )
        .await,
        table(&[["1"]])
    );
}

#[tokio::test]
async fn developers_also_query_raw_source_tables() {
    let text = demo_config_text("").replace(
        "roles = { carol = \"admin\", dave = \"viewer\" }",
        "roles = { carol = \"admin\", dave = \"viewer\", bob = \"developer\" }",
    );
    let config =
        biproxy::config::parse(&text, "dev.toml", std::path::Path::new(".")).expect("config");
    let server = TestServer::with_config(config).await;
    let bob = server.connect("bob").await;
    let raw = rows(&bob, "SELECT count(*) FROM demo_lake.orders").await;
    assert_eq!(raw, table(&[[crate::support::ORDERS.to_string().as_str()]]));
    // Datasets keep their policies for a developer.
    let regions = rows(&bob, "SELECT DISTINCT region FROM sales ORDER BY 1").await;
    assert_eq!(regions, table(&[["North"], ["South"]]));
    let listed = rows(
        &bob,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'demo_lake'",
    )
    .await;
    assert_ne!(listed, table(&[["0"]]));
    // An analyst has no raw tables, nor does a viewer.
    for user in ["alice", "dave"] {
        let client = server.connect(user).await;
        let err = client
            .simple_query("SELECT count(*) FROM demo_lake.orders")
            .await
            .expect_err("no raw tables");
        assert_eq!(sqlstate(&err), "42P01", "{user}: {err:?}");
        assert_eq!(
            rows(
                &client,
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'demo_lake'"
            )
            .await,
            table(&[["0"]])
        );
    }
}
