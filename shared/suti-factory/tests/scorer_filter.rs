//! The scorer learns to pair EmojiWorld images with their captions (held-out retrieval accuracy
//! reported), and the ΔCLIP filter built on it judges constructed candidates as the design says:
//! a copy of a demonstration is rejected, the subject in the new place is accepted, the new place
//! without the subject is rejected.

mod common;

use candle_core::Device;
use common::*;
use suti_data::Scene;
use suti_factory::filter::{DeltaReference, FilterModels, Rejection, default_thresholds, judge};
use suti_factory::scorer::{ScorerTrainConfig, tower_features, train_scorer};
use suti_models::ScorerConfig;

#[test]
fn the_scorer_ranks_captions_and_the_filter_judges_constructed_candidates() {
    suti_models::tune_allocator();
    let assets = assets();
    let text = text_encoder();
    let tower = image_tower();
    let subjects = subjects(&assets, 8, 37);
    let scenes: Vec<Scene> = Scene::RECONTEXTUALISATION[..10].to_vec();
    // Every subject in every place once: 80 pairs, a fifth held out.
    let mut images = Vec::new();
    let mut captions = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        for (j, &scene) in scenes.iter().enumerate() {
            images.push(render(&assets, subject, scene, (i * 31 + j) as u64, 64));
            captions.push(caption(subject, scene));
        }
    }
    let features = tower_features(&tower, &images).unwrap();
    let sentences: Vec<Vec<f32>> = captions
        .iter()
        .map(|c| text.sentence_vector(c).unwrap())
        .collect();
    let (scorer, report) = train_scorer(
        &features,
        &sentences,
        &ScorerConfig::default(),
        &ScorerTrainConfig {
            steps: 300,
            batch: 48,
            ..ScorerTrainConfig::default()
        },
        &Device::Cpu,
        |_, _| {},
    )
    .unwrap();
    println!("{report:#?}");
    assert!(report.loss_last < 0.5 * report.loss_first);
    assert!(
        report.heldout_accuracy >= 0.5,
        "the right caption ranks first for {:.0}% of held-out pairs",
        report.heldout_accuracy * 100.0
    );
    assert!(report.heldout_accuracy > report.heldout_accuracy_untrained + 0.2);

    // Constructed candidates for a subject shown on the beach, in the city and on a wooden floor,
    // all asked to be "in the snow".
    let subject = &subjects[3];
    let demos: Vec<_> = [Scene::Beach, Scene::City, Scene::WoodenFloor]
        .iter()
        .enumerate()
        .map(|(k, &s)| render(&assets, subject, s, 500 + k as u64, 64))
        .collect();
    let prompt = format!("a {} in the snow", subject.class.noun);
    let candidates = vec![
        (demos[0].clone(), prompt.clone()),
        (
            render(&assets, subject, Scene::Snow, 600, 64),
            prompt.clone(),
        ),
        (empty_scene(Scene::Snow, 600, 64), prompt.clone()),
    ];
    let models = FilterModels {
        tower: &tower,
        scorer: &scorer,
        text: &text,
    };
    let scores = models.score(&demos, &candidates).unwrap();
    for (name, s) in ["copy", "new place", "subject lost"].iter().zip(&scores) {
        println!("{name}: {s:?}");
    }
    let thresholds = default_thresholds();
    assert_eq!(
        judge(&scores[0], &thresholds),
        Err(Rejection::PromptNotFollowed)
    );
    assert_eq!(judge(&scores[1], &thresholds), Ok(()));
    assert_eq!(judge(&scores[2], &thresholds), Err(Rejection::SubjectLost));

    // ΔCLIP-T against the demonstrations' captions judges the same cases the same way: the copy
    // matches its own caption as well as the new prompt, the subject in the snow follows it.
    let demo_captions: Vec<String> = [Scene::Beach, Scene::City, Scene::WoodenFloor]
        .iter()
        .map(|&s| caption(subject, s))
        .collect();
    let scores = models
        .score_against(
            &demos,
            &demo_captions,
            &candidates,
            DeltaReference::Captions,
        )
        .unwrap();
    for (name, s) in ["copy", "new place", "subject lost"].iter().zip(&scores) {
        println!("against captions, {name}: {s:?}");
    }
    assert_eq!(
        judge(&scores[0], &thresholds),
        Err(Rejection::PromptNotFollowed)
    );
    assert_eq!(judge(&scores[1], &thresholds), Ok(()));
    assert_eq!(judge(&scores[2], &thresholds), Err(Rejection::SubjectLost));
    assert!(
        models
            .score_against(&demos, &[], &candidates, DeltaReference::Captions)
            .is_err(),
        "captions are required"
    );
}
