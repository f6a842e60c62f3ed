//! Sources: where a workspace's data lives.
//!
//! Owns connecting to data and turning it into DataFusion table providers. Today there is
//! one kind, `lake`: directories of Parquet files read in-process by DataFusion, which also
//! holds the generator of the embedded demo data.

pub mod lake;
