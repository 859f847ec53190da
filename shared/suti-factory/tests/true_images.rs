//! The renderer's true-image data for the diagnostics: the base's pairs and the apprentice's
//! triplets are the same renders of the same subjects, and the subjects differ by split.

mod common;

use std::collections::HashSet;

use common::*;
use suti_data::Split;
use suti_factory::true_triplets::{
    DEMOS, TrueTripletSettings, true_pairs, true_triplet_subjects, true_triplets,
};

#[test]
fn the_base_pairs_are_the_apprentice_triplets_images_with_their_captions() {
    let assets = assets();
    let text = text_encoder();
    let settings = TrueTripletSettings {
        subjects: 3,
        targets_per_subject: 4,
        ..TrueTripletSettings::default()
    };
    let subjects = true_triplet_subjects(&assets, Split::Train, &settings);
    assert_eq!(subjects.len(), 3);
    let mut counted = 0;
    let pairs = true_pairs(&assets, &subjects, &settings, 32, &mut || counted += 1).unwrap();
    let triplets = true_triplets(&assets, &subjects, &settings, &text, 32, &mut || {}).unwrap();
    assert_eq!(counted, 3);
    assert_eq!(pairs.len(), 3 * (DEMOS + 4));
    assert_eq!(triplets.len(), 3 * 4);
    for (s, subject) in subjects.iter().enumerate() {
        let of_subject = &pairs[s * (DEMOS + 4)..(s + 1) * (DEMOS + 4)];
        for pair in of_subject {
            assert!(
                pair.caption.contains(&subject.class.noun),
                "{}",
                pair.caption
            );
            assert_eq!(pair.image.len(), 3 * 32 * 32);
        }
        // The demonstrations come first, as the triplets show them, then the targets.
        let triplet = &triplets[s * 4];
        assert_eq!(of_subject[0].image, triplet.demos.images[0]);
        for (k, t) in triplets[s * 4..(s + 1) * 4].iter().enumerate() {
            assert_eq!(of_subject[DEMOS + k].image, t.target);
            assert_eq!(of_subject[DEMOS + k].caption, t.prompt);
        }
    }
    // Different subjects draw different images.
    assert_ne!(pairs[0].image, pairs[DEMOS + 4].image);
}

#[test]
fn training_and_held_out_subjects_never_meet() {
    let assets = assets();
    let settings = TrueTripletSettings {
        subjects: 0,
        ..TrueTripletSettings::default()
    };
    let train: HashSet<String> = true_triplet_subjects(&assets, Split::Train, &settings)
        .iter()
        .map(|s| s.class.unified.clone())
        .collect();
    let held: HashSet<String> = true_triplet_subjects(&assets, Split::HeldOut, &settings)
        .iter()
        .map(|s| s.class.unified.clone())
        .collect();
    assert!(
        train.len() > 100 && !held.is_empty(),
        "{} / {}",
        train.len(),
        held.len()
    );
    assert!(train.is_disjoint(&held));
}

#[test]
fn generic_nouns_change_the_prompts_and_nothing_else() {
    let assets = assets();
    let text = text_encoder();
    let named = TrueTripletSettings {
        subjects: 2,
        targets_per_subject: 6,
        ..TrueTripletSettings::default()
    };
    let subjects = true_triplet_subjects(&assets, Split::Train, &named);
    let make = |share: f32| {
        let settings = TrueTripletSettings {
            generic_noun_share: share,
            ..named.clone()
        };
        true_triplets(&assets, &subjects, &settings, &text, 32, &mut || {}).unwrap()
    };
    let (with_nouns, generic) = (make(0.0), make(1.0));
    for (a, b) in with_nouns.iter().zip(&generic) {
        assert_eq!(a.target, b.target, "the renders depend on the naming");
        assert_eq!(a.demos.images, b.demos.images);
        assert_ne!(a.prompt, b.prompt);
        assert!(
            b.prompt.contains("animal") || b.prompt.contains("object"),
            "{}",
            b.prompt
        );
    }
    for (s, subject) in subjects.iter().enumerate() {
        for t in &with_nouns[s * 6..(s + 1) * 6] {
            assert!(t.prompt.contains(&subject.class.noun), "{}", t.prompt);
        }
    }
    // Half: some of each.
    let half = make(0.5);
    let renamed = half
        .iter()
        .zip(&with_nouns)
        .filter(|(h, n)| h.prompt != n.prompt)
        .count();
    assert!(
        renamed > 0 && renamed < half.len(),
        "{renamed} of {}",
        half.len()
    );
}

#[test]
fn skipped_subjects_take_their_classes_with_them() {
    let assets = assets();
    let base = TrueTripletSettings {
        subjects: 50,
        ..TrueTripletSettings::default()
    };
    let after = TrueTripletSettings {
        skip_subjects: 50,
        ..base.clone()
    };
    let seen: HashSet<String> = true_triplet_subjects(&assets, Split::Train, &base)
        .iter()
        .map(|s| s.class.unified.clone())
        .collect();
    let unseen = true_triplet_subjects(&assets, Split::Train, &after);
    assert_eq!(unseen.len(), 50);
    assert!(
        unseen.iter().all(|s| !seen.contains(&s.class.unified)),
        "a skipped class came back"
    );
}
