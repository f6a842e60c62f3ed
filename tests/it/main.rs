//! The one integration-test binary (linking DataFusion once keeps CI fast).
//!
//! Every test starts a real biproxy on an ephemeral port and talks to it over a real
//! socket with a real client: tokio-postgres, and the `psql` binary for the `\d` family.
//! Where new tests go: the command line in `cli`, protocol and errors in `wire`, catalog and session commands in
//! `catalog`, psql in `psql`, cancellation and timeouts in `cancel`, TLS in `tls`, measures and the model schema in `semantic`.

mod cancel;
mod catalog;
mod cli;
mod jdbc;
mod psql;
mod semantic;
mod support;
mod tls;
mod wire;
