//! crawler-clusterer, the first stage of the pipeline (architecture.md §2, §8, §10): turns web
//! pages and WARC files into subject clusters — groups of 3–10 images of one subject with their
//! captions.
//!
//! The engine that mines them lives in the `suti-crawl` library; this crate wraps it as a service.
//! The stage handler writes and publishes what the engine finds ([`handler`]), counting it in the
//! crawler's metrics ([`metrics`]); [`service::run`] runs it under the stage harness
//! (`suti crawler-clusterer`).

pub mod handler;
pub mod metrics;
pub mod service;

// The engine's modules stay reachable at their old paths, so the service and its tests keep
// naming them through this crate.
pub use suti_crawl::{cluster, engine, extract, fetch, ingest, phash, politeness, url_policy};
