//! Property tests: every payload survives encode → decode unchanged, whatever its contents; and
//! hostile bytes (random, or valid encodings with bytes flipped, cut short or spliced) never panic
//! any decoder (issue 10). `PROPTEST_CASES` raises the case count for a longer fuzzing run.

use proptest::prelude::*;
use suti_messages::*;
use suti_testkit::fuzz::{fuzz_config, mutate, mutation};

fn text() -> impl Strategy<Value = String> {
    // Arbitrary unicode, including empty strings and multi-byte characters.
    any::<String>()
}

fn finite() -> impl Strategy<Value = f32> {
    -1.0e6f32..1.0e6f32
}

fn cluster_mined() -> impl Strategy<Value = ClusterMinedV1> {
    (
        text(),
        text(),
        text(),
        text(),
        prop::collection::vec(text(), 0..12),
    )
        .prop_map(
            |(run_id, cluster_id, manifest_key, subject_noun, image_keys)| ClusterMinedV1 {
                run_id,
                cluster_id,
                manifest_key,
                subject_noun,
                image_keys,
            },
        )
}

fn crawl_request() -> impl Strategy<Value = CrawlRequestV1> {
    (
        text(),
        prop::collection::vec(text(), 0..5),
        prop::collection::vec(text(), 0..5),
        any::<(u32, u32, u32, u32)>(),
    )
        .prop_map(
            |(run_id, seed_urls, warc_keys, (a, b, c, d))| CrawlRequestV1 {
                run_id,
                seed_urls,
                warc_keys,
                limits: CrawlLimits {
                    max_pages: a,
                    max_depth: b,
                    max_images_per_page: c,
                    max_clusters: d,
                },
            },
        )
}

fn expert_trained() -> impl Strategy<Value = ExpertTrainedV1> {
    (
        (text(), text(), text(), text()),
        (text(), text(), text()),
        any::<u32>(),
        (finite(), finite(), finite(), any::<u32>()),
    )
        .prop_map(
            |(
                (run_id, cluster_id, manifest_key, base_version),
                (adapter_key, identifier_token, subject_noun),
                rank,
                (first, last, min, steps),
            )| ExpertTrainedV1 {
                run_id,
                cluster_id,
                manifest_key,
                base_version,
                adapter_key,
                identifier_token,
                subject_noun,
                rank,
                loss: LossSummary {
                    first,
                    last,
                    min,
                    steps,
                },
            },
        )
}

fn candidates_generated() -> impl Strategy<Value = CandidatesGeneratedV1> {
    let candidate =
        (text(), text(), text(), any::<u64>()).prop_map(|(image_key, prompt, template, seed)| {
            Candidate {
                image_key,
                prompt,
                template,
                seed,
            }
        });
    (
        (text(), text(), text(), text(), text()),
        prop::collection::vec(candidate, 0..8),
        text(),
    )
        .prop_map(
            |(
                (run_id, cluster_id, manifest_key, adapter_key, base_version),
                candidates,
                identifier_token,
            )| {
                CandidatesGeneratedV1 {
                    run_id,
                    cluster_id,
                    manifest_key,
                    adapter_key,
                    base_version,
                    candidates,
                    identifier_token,
                }
            },
        )
}

fn examples_accepted() -> impl Strategy<Value = ExamplesAcceptedV1> {
    (
        (text(), text(), text(), text()),
        any::<(u32, u32)>(),
        (finite(), finite()),
    )
        .prop_map(
            |((run_id, cluster_id, shard_key, scorer_version), (accepted, rejected), (d, s))| {
                ExamplesAcceptedV1 {
                    run_id,
                    cluster_id,
                    shard_key,
                    accepted,
                    rejected,
                    scorer_version,
                    thresholds: FilterThresholds {
                        delta_clip_min: d,
                        subject_similarity_min: s,
                    },
                }
            },
        )
}

fn apprentice_published() -> impl Strategy<Value = ApprenticePublishedV1> {
    (
        (text(), text(), text(), text()),
        (finite(), any::<u64>(), any::<u64>(), any::<u32>()),
        any::<u64>(),
    )
        .prop_map(
            |(
                (version, weights_key, config_key, base_version),
                (loss, steps, examples_seen, clusters),
                published_at_ms,
            )| ApprenticePublishedV1 {
                version,
                weights_key,
                config_key,
                base_version,
                metrics: ApprenticeMetrics {
                    loss,
                    steps,
                    examples_seen,
                    clusters,
                },
                published_at_ms,
            },
        )
}

fn round_trips<M: Message + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = encode(message).unwrap();
    let back: M = decode(&bytes).unwrap();
    assert_eq!(&back, message);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn crawl_request_round_trips(m in crawl_request()) { round_trips(&m) }

    #[test]
    fn cluster_mined_round_trips(m in cluster_mined()) { round_trips(&m) }

    #[test]
    fn expert_trained_round_trips(m in expert_trained()) { round_trips(&m) }

    #[test]
    fn candidates_generated_round_trips(m in candidates_generated()) { round_trips(&m) }

    #[test]
    fn examples_accepted_round_trips(m in examples_accepted()) { round_trips(&m) }

    #[test]
    fn apprentice_published_round_trips(m in apprentice_published()) { round_trips(&m) }

    /// Arbitrary bytes never panic the decoder: they decode or give an error.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_as_every_type(&bytes);
    }
}

/// Decodes `bytes` as every payload type; each must return (a value or an error), never panic.
fn decode_as_every_type(bytes: &[u8]) {
    let _ = decode::<CrawlRequestV1>(bytes);
    let _ = decode::<ClusterMinedV1>(bytes);
    let _ = decode::<ExpertTrainedV1>(bytes);
    let _ = decode::<CandidatesGeneratedV1>(bytes);
    let _ = decode::<ExamplesAcceptedV1>(bytes);
    let _ = decode::<ApprenticePublishedV1>(bytes);
}

/// A valid encoding of some payload, so that mutations land close to the decoders' real paths.
fn valid_encoding() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        crawl_request().prop_map(|m| encode(&m).unwrap()),
        cluster_mined().prop_map(|m| encode(&m).unwrap()),
        expert_trained().prop_map(|m| encode(&m).unwrap()),
        candidates_generated().prop_map(|m| encode(&m).unwrap()),
        examples_accepted().prop_map(|m| encode(&m).unwrap()),
        apprentice_published().prop_map(|m| encode(&m).unwrap()),
    ]
}

proptest! {
    #![proptest_config(fuzz_config(2048))]

    /// Valid encodings, damaged: every decoder answers with a value or an error.
    #[test]
    fn damaged_encodings_never_panic_a_decoder(
        bytes in valid_encoding(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        decode_as_every_type(&mutate(bytes, &mutations));
    }
}
