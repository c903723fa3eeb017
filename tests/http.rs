//! The server in process (`common::Server` runs the application on a thread of this process),
//! spoken to over real TCP on 127.0.0.1 and checked byte for byte.

mod common;

#[path = "http/changing.rs"]
mod changing;
#[path = "http/conditionals.rs"]
mod conditionals;
#[path = "http/cors.rs"]
mod cors;
#[path = "http/digests.rs"]
mod digests;
#[path = "http/encodings.rs"]
mod encodings;
#[path = "http/equivalence.rs"]
mod equivalence;
#[path = "http/fast_path.rs"]
mod fast_path;
#[path = "http/handle_cache.rs"]
mod handle_cache;
#[path = "http/headers.rs"]
mod headers;
#[path = "http/http2.rs"]
mod http2;
#[path = "http/lab.rs"]
mod lab;
#[path = "http/limits.rs"]
mod limits;
#[path = "http/listing.rs"]
mod listing;
#[path = "http/paths.rs"]
mod paths;
#[path = "http/ranges.rs"]
mod ranges;
#[path = "http/replicas.rs"]
mod replicas;
#[path = "http/repr_digest.rs"]
mod repr_digest;
#[path = "http/sendfile.rs"]
mod sendfile;
#[path = "http/serving.rs"]
mod serving;
#[path = "http/smoke.rs"]
mod smoke;
#[path = "http/streaming.rs"]
mod streaming;
#[path = "http/tls.rs"]
mod tls;
