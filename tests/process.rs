//! The `rangeserve` binary as a child process (`common::process`): configuration from file,
//! environment and flags, start-up errors, signals and shutdown, logs and metrics, TLS, uploads.

mod common;

#[path = "process/cli.rs"]
mod cli;
#[path = "process/cors.rs"]
mod cors;
#[path = "process/digests.rs"]
mod digests;
#[path = "process/encodings.rs"]
mod encodings;
#[path = "process/headers.rs"]
mod headers;
#[path = "process/healthcheck.rs"]
mod healthcheck;
#[path = "process/lab.rs"]
mod lab;
#[path = "process/lab_upload.rs"]
mod lab_upload;
#[path = "process/limits.rs"]
mod limits;
#[path = "process/listing.rs"]
mod listing;
#[path = "process/observability.rs"]
mod observability;
#[path = "process/operators.rs"]
mod operators;
#[path = "process/repr_digest.rs"]
mod repr_digest;
#[path = "process/shutdown.rs"]
mod shutdown;
#[path = "process/tls.rs"]
mod tls;
#[path = "process/upload.rs"]
mod upload;
#[path = "process/upload_ietf.rs"]
mod upload_ietf;
