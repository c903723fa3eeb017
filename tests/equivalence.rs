mod common;
#[path = "http/equivalence.rs"]
mod equivalence;
