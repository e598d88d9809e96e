//! The one integration-test binary: oracle tests of the incremental operators, determinism
//! across worker counts, every shipped spec against golden outputs, the CLI, and the DuckDB
//! external oracle.

mod bad_input;
mod cli;
mod composed;
mod csv;
mod dedup;
mod duckdb;
mod enrich;
mod fields;
mod forecast;
mod fuzz;
mod golden;
mod joins;
mod metadata;
mod nexmark;
mod notebooks;
mod numbers;
mod oracle;
mod replication;
mod replication_windows;
mod retracting;
mod routing;
mod routing_eval;
mod schema;
mod script;
mod serve;
mod serve_checkpoint;
mod serve_clients;
mod serve_forecast;
mod serve_http;
mod serve_latency;
mod serve_limits;
mod serve_memory;
mod serve_partitions;
mod serve_snapshots;
mod serve_util;
mod services;
mod session;
mod stream_contexts;
mod top_n;
mod util;
