//! biproxy: a PostgreSQL-wire BI query gateway.
//!
//! BI tools, SQL clients and ORMs connect to biproxy as if it were PostgreSQL. biproxy
//! answers them from curated datasets (the semantic layer) defined over the company's
//! sources, read-only.
//!
//! # Layout
//!
//! - [`config`]: loading and validating the config file; errors name file, line and field.
//! - [`server`]: the listener, TLS, the per-connection task and graceful shutdown.
//! - [`wire`]: the pgwire handlers that turn protocol messages into calls on a session.
//! - [`auth`]: SCRAM-SHA-256 verifiers and the server side of the SCRAM exchange.
//! - [`session`]: per-connection state: identity, settings, the DataFusion context.
//! - [`plan`]: parse, classify, answer session commands locally, plan the rest.
//! - [`catalog`]: `pg_catalog`, `information_schema` and PostgreSQL functions clients need.
//! - [`semantic`]: datasets, the tables a workspace shows its clients.
//! - [`cache`]: the result cache, keyed by what actually runs.
//! - [`accel`]: accelerated datasets (local copies) and their rollups.
//! - [`admin`]: the HTTP interface: health, Prometheus metrics, cache and copy control.
//! - [`source`]: where the data lives: Parquet lakes, PostgreSQL and MySQL, and what each
//!   can run when a query is pushed down to it.
//! - [`error`]: the crate error, its SQLSTATE, and the single mapping to the wire.

pub mod accel;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod error;
pub mod plan;
pub mod policy;
pub mod semantic;
pub mod server;
pub mod session;
pub mod source;
pub mod wire;

pub use error::{Error, SqlState};
