//! Real download clients (curl, wget, aria2c, each a separate process) against the real server
//! binary and its lab, real upload clients (tus-js-client, tuspy, curl -T), and the upload page
//! in headless Chromium. A missing client skips its tests with a notice, or fails them when `CI`
//! is set.

mod common;

#[path = "clients/browser.rs"]
mod browser;
#[path = "clients/downloads.rs"]
mod downloads;
#[path = "clients/lab.rs"]
mod lab;
#[path = "clients/support.rs"]
mod support;
#[path = "clients/uploads.rs"]
mod uploads;
