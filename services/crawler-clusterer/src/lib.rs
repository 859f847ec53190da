//! crawler-clusterer, the first stage of the pipeline (architecture.md §2, §8, §10): turns web
//! pages and WARC files into subject clusters — groups of 3–10 images of one subject with their
//! captions.
//!
//! Built so far: the address policy that keeps the crawler off private networks
//! ([`url_policy`]), the defensive fetcher ([`fetch`]), robots.txt with the frontier and per-host
//! rate shared across replicas ([`politeness`]), page extraction ([`extract`]), image ingestion
//! under decode limits ([`ingest`]), perceptual hashing for near-duplicate images ([`phash`]) and
//! clustering with medoid filtering and caption nouns ([`cluster`]). The crawl engine mines
//! the web or a WARC archive ([`engine`]) and the stage handler writes and publishes what they
//! find ([`handler`]). [`service::run`] runs it under the stage harness (`suti crawler-clusterer`).

pub mod cluster;
pub mod engine;
pub mod extract;
pub mod fetch;
pub mod handler;
pub mod ingest;
pub mod metrics;
pub mod phash;
pub mod politeness;
pub mod service;
pub mod url_policy;
