//! The crawl engine behind the pipeline's first stage (architecture.md §2, §5, §8): mines the web
//! or a WARC archive into subject clusters — groups of 3–10 images of one subject with their
//! captions. A library, so that the crawler-clusterer service and `suti bench crawl` run the same
//! engine without one importing the other.
//!
//! The address policy that keeps the crawler off private networks ([`url_policy`]), the defensive
//! fetcher ([`fetch`]), robots.txt with the frontier and per-host rate shared across replicas
//! ([`politeness`]), page extraction ([`extract`]), image ingestion under decode limits
//! ([`ingest`]), perceptual hashing for near-duplicate images ([`phash`]), clustering with medoid
//! filtering and caption nouns ([`cluster`]), and the crawl itself that ties them together
//! ([`engine`]).

pub mod cluster;
pub mod engine;
pub mod extract;
pub mod fetch;
pub mod ingest;
pub mod phash;
pub mod politeness;
pub mod url_policy;
