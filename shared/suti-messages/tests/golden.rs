//! Golden-bytes tests: the wire format of every v1 payload is pinned byte for byte, so a change that
//! would break a peer running the previous release fails here first. To update after an intended,
//! compatible change, run with `SUTI_PRINT_GOLDEN=1` and review the new hex.

use suti_messages::*;

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            CrawlRequestV1::TYPE,
            encode(&CrawlRequestV1 {
                run_id: "run-1".into(),
                seed_urls: vec!["http://127.0.0.1:8080/".into()],
                warc_keys: vec!["warc/a.warc.gz".into()],
                limits: CrawlLimits::default(),
            })
            .unwrap(),
        ),
        (
            ClusterMinedV1::TYPE,
            encode(&ClusterMinedV1 {
                run_id: "run-1".into(),
                cluster_id: "c0ffee".into(),
                manifest_key: "clusters/c0ffee.msgpack".into(),
                subject_noun: "teapot".into(),
                image_keys: vec!["images/ab.png".into(), "images/cd.png".into()],
            })
            .unwrap(),
        ),
        (
            ExpertTrainedV1::TYPE,
            encode(&ExpertTrainedV1 {
                run_id: "run-1".into(),
                cluster_id: "c0ffee".into(),
                manifest_key: "clusters/c0ffee.msgpack".into(),
                base_version: "b1".into(),
                adapter_key: "experts/c0ffee/b1.safetensors".into(),
                identifier_token: "sks".into(),
                subject_noun: "teapot".into(),
                rank: 4,
                loss: LossSummary {
                    first: 1.0,
                    last: 0.25,
                    min: 0.125,
                    steps: 500,
                },
            })
            .unwrap(),
        ),
        (
            CandidatesGeneratedV1::TYPE,
            encode(&CandidatesGeneratedV1 {
                run_id: "run-1".into(),
                cluster_id: "c0ffee".into(),
                manifest_key: "clusters/c0ffee.msgpack".into(),
                adapter_key: "experts/c0ffee/b1.safetensors".into(),
                base_version: "b1".into(),
                candidates: vec![Candidate {
                    image_key: "candidates/c0ffee/0.png".into(),
                    prompt: "a sks teapot on the beach".into(),
                    template: "recontextualisation".into(),
                    seed: 7,
                }],
                identifier_token: "sks".into(),
            })
            .unwrap(),
        ),
        (
            ExamplesAcceptedV1::TYPE,
            encode(&ExamplesAcceptedV1 {
                run_id: "run-1".into(),
                cluster_id: "c0ffee".into(),
                shard_key: "datasets/apprentice/c0ffee.msgpack".into(),
                accepted: 3,
                rejected: 5,
                scorer_version: "s1".into(),
                thresholds: FilterThresholds {
                    delta_clip_min: 0.02,
                    subject_similarity_min: 0.5,
                },
            })
            .unwrap(),
        ),
        (
            ApprenticePublishedV1::TYPE,
            encode(&ApprenticePublishedV1 {
                version: "a1".into(),
                weights_key: "models/apprentice/a1/model.safetensors".into(),
                config_key: "models/apprentice/a1/config.json".into(),
                base_version: "b1".into(),
                metrics: ApprenticeMetrics {
                    loss: 0.5,
                    steps: 100,
                    examples_seen: 800,
                    clusters: 4,
                },
                published_at_ms: 1_700_000_000_000,
            })
            .unwrap(),
        ),
    ]
}

const GOLDEN: [(&str, &str); 6] = [
    (
        CrawlRequestV1::TYPE,
        "84a672756e5f6964a572756e2d31a9736565645f75726c7391b6687474703a2f2f3132372e302e302e313a383038302fa9776172635f6b65797391ae776172632f612e776172632e677aa66c696d69747384a96d61785f7061676573cd03e8a96d61785f646570746803b36d61785f696d616765735f7065725f7061676520ac6d61785f636c757374657273cd03e8",
    ),
    (
        ClusterMinedV1::TYPE,
        "85a672756e5f6964a572756e2d31aa636c75737465725f6964a6633066666565ac6d616e69666573745f6b6579b7636c7573746572732f6330666665652e6d73677061636bac7375626a6563745f6e6f756ea6746561706f74aa696d6167655f6b65797392ad696d616765732f61622e706e67ad696d616765732f63642e706e67",
    ),
    (
        ExpertTrainedV1::TYPE,
        "89a672756e5f6964a572756e2d31aa636c75737465725f6964a6633066666565ac6d616e69666573745f6b6579b7636c7573746572732f6330666665652e6d73677061636bac626173655f76657273696f6ea26231ab616461707465725f6b6579bd657870657274732f6330666665652f62312e7361666574656e736f7273b06964656e7469666965725f746f6b656ea3736b73ac7375626a6563745f6e6f756ea6746561706f74a472616e6b04a46c6f737384a56669727374ca3f800000a46c617374ca3e800000a36d696eca3e000000a57374657073cd01f4",
    ),
    (
        CandidatesGeneratedV1::TYPE,
        "87a672756e5f6964a572756e2d31aa636c75737465725f6964a6633066666565ac6d616e69666573745f6b6579b7636c7573746572732f6330666665652e6d73677061636bab616461707465725f6b6579bd657870657274732f6330666665652f62312e7361666574656e736f7273ac626173655f76657273696f6ea26231aa63616e646964617465739184a9696d6167655f6b6579b763616e646964617465732f6330666665652f302e706e67a670726f6d7074b96120736b7320746561706f74206f6e20746865206265616368a874656d706c617465b37265636f6e7465787475616c69736174696f6ea47365656407b06964656e7469666965725f746f6b656ea3736b73",
    ),
    (
        ExamplesAcceptedV1::TYPE,
        "87a672756e5f6964a572756e2d31aa636c75737465725f6964a6633066666565a973686172645f6b6579d92264617461736574732f61707072656e746963652f6330666665652e6d73677061636ba8616363657074656403a872656a656374656405ae73636f7265725f76657273696f6ea27331aa7468726573686f6c647382ae64656c74615f636c69705f6d696eca3ca3d70ab67375626a6563745f73696d696c61726974795f6d696eca3f000000",
    ),
    (
        ApprenticePublishedV1::TYPE,
        "86a776657273696f6ea26131ab776569676874735f6b6579d9266d6f64656c732f61707072656e746963652f61312f6d6f64656c2e7361666574656e736f7273aa636f6e6669675f6b6579d9206d6f64656c732f61707072656e746963652f61312f636f6e6669672e6a736f6eac626173655f76657273696f6ea26231a76d65747269637384a46c6f7373ca3f000000a5737465707364ad6578616d706c65735f7365656ecd0320a8636c75737465727304af7075626c69736865645f61745f6d73cf0000018bcfe56800",
    ),
];

#[test]
fn every_type_has_a_golden_sample() {
    let sampled: Vec<_> = samples().into_iter().map(|(t, _)| t).collect();
    assert_eq!(sampled, ALL_TYPES.to_vec());
    let pinned: Vec<_> = GOLDEN.iter().map(|(t, _)| *t).collect();
    assert_eq!(pinned, ALL_TYPES.to_vec());
}

#[test]
fn wire_bytes_match_the_golden_copies() {
    let print = std::env::var_os("SUTI_PRINT_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for ((type_name, bytes), (_, golden)) in samples().into_iter().zip(GOLDEN) {
        let actual = hex::encode(&bytes);
        if print {
            println!("    ({type_name:?}, \"{actual}\"),");
        }
        if actual != golden {
            mismatches.push(type_name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "wire format changed for {mismatches:?}"
    );
}

#[test]
fn golden_bytes_decode_to_the_samples() {
    for (type_name, golden) in GOLDEN {
        let bytes = hex::decode(golden).unwrap();
        let re_encoded = match type_name {
            "crawl.request.v1" => encode(&decode::<CrawlRequestV1>(&bytes).unwrap()),
            "cluster.mined.v1" => encode(&decode::<ClusterMinedV1>(&bytes).unwrap()),
            "expert.trained.v1" => encode(&decode::<ExpertTrainedV1>(&bytes).unwrap()),
            "candidates.generated.v1" => encode(&decode::<CandidatesGeneratedV1>(&bytes).unwrap()),
            "examples.accepted.v1" => encode(&decode::<ExamplesAcceptedV1>(&bytes).unwrap()),
            "apprentice.published.v1" => encode(&decode::<ApprenticePublishedV1>(&bytes).unwrap()),
            other => panic!("no decoder for {other}"),
        }
        .unwrap();
        assert_eq!(
            re_encoded, bytes,
            "{type_name} does not survive decode/encode"
        );
    }
}

/// `candidates.generated.v1` as the first release wrote it, before `identifier_token` was added.
const CANDIDATES_BEFORE_IDENTIFIER_TOKEN: &str = "86a672756e5f6964a572756e2d31aa636c75737465725f6964a6633066666565ac6d616e69666573745f6b6579b7636c7573746572732f6330666665652e6d73677061636bab616461707465725f6b6579bd657870657274732f6330666665652f62312e7361666574656e736f7273ac626173655f76657273696f6ea26231aa63616e646964617465739184a9696d6167655f6b6579b763616e646964617465732f6330666665652f302e706e67a670726f6d7074b96120736b7320746561706f74206f6e20746865206265616368a874656d706c617465b37265636f6e7465787475616c69736174696f6ea47365656407";

#[test]
fn a_message_from_before_a_compatible_addition_still_decodes() {
    let old: CandidatesGeneratedV1 =
        decode(&hex::decode(CANDIDATES_BEFORE_IDENTIFIER_TOKEN).unwrap()).unwrap();
    assert_eq!(old.identifier_token, "");
    assert_eq!(old.candidates[0].prompt, "a sks teapot on the beach");
}

#[test]
fn a_field_added_later_is_ignored_by_this_version() {
    // A newer producer may add `#[serde(default)]` fields; this version must still decode the body.
    #[derive(serde::Serialize)]
    struct FutureClusterMined<'a> {
        run_id: &'a str,
        cluster_id: &'a str,
        manifest_key: &'a str,
        subject_noun: &'a str,
        image_keys: Vec<&'a str>,
        quality_score: f32,
    }
    let body = rmp_serde_encode(&FutureClusterMined {
        run_id: "r",
        cluster_id: "c",
        manifest_key: "clusters/c.msgpack",
        subject_noun: "dog",
        image_keys: vec!["images/x.png"],
        quality_score: 0.9,
    });
    let decoded: ClusterMinedV1 = decode(&body).unwrap();
    assert_eq!(decoded.subject_noun, "dog");
}

#[test]
fn garbage_is_a_decode_error_that_names_the_type() {
    let err = decode::<ExpertTrainedV1>(b"\xc1garbage").unwrap_err();
    assert!(err.to_string().contains("expert.trained.v1"), "{err}");
}

fn rmp_serde_encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}
