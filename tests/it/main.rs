//! The one integration-test binary (linking DataFusion once keeps CI fast).
//!
//! Every test starts a real biproxy on an ephemeral port and talks to it over a real
//! socket with a real client: tokio-postgres, and the `psql` binary for the `\d` family.
//! Where new tests go: the command line in `cli`; protocol and errors in `wire`; catalog
//! and session commands in `catalog`; psql in `psql`; pgJDBC in `jdbc`; cancellation and
//! timeouts in `cancel`; TLS in `tls`; measures and the model schema in `semantic`;
//! PostgreSQL and MySQL sources (pushdown, types, faults) in `sources`; the demo model on
//! every source (golden `tests/slt/sources/model.slt`) in `pushdown`; CSV and partitioned
//! lakes in `lake`; the TPC-H differential suite (`tests/tpch/`) in `tpch`; SQL Server's
//! generated SQL (golden `tests/tpch/sqlserver/`) in `sqlserver`; row policies, roles and
//! grants (adversarial queries against hand-filtered raw data) in `security`; signed-token
//! logins in `tokens`; the result cache in `cache`; accelerated datasets and rollups in
//! `accel`.
//! Golden SQL files go in `tests/slt/*.slt` (run by `slt`; `BIPROXY_SLT_COMPLETE=1`
//! rewrites their expected output for review).

mod accel;
mod cache;
mod cancel;
mod catalog;
mod cli;
mod jdbc;
mod lake;
mod psql;
mod pushdown;
mod security;
mod semantic;
mod slt;
mod sources;
mod sqlserver;
mod support;
mod tls;
mod tokens;
mod tpch;
mod wire;
