//! The sanity check on a small held-out set, with the real image tower and EmojiWorld artwork:
//! the metric the protocol reports must tell the demonstrated subject from another class and from
//! the other drawing of its class, and blur must move it less than a change of subject does. The
//! same check on the default 24 subjects is `suti eval sanity` (docs/eval.md).

use suti_data::Assets;
use suti_data::benchmark::write_benchmark;
use suti_eval::features::CENTRING_RENDERS;
use suti_eval::sanity::{
    MIN_AUC_OTHER_CLASS, MIN_AUC_OTHER_DRAWING, MetricVariant, SanityInputs, run_sanity,
    sanity_cases, sanity_markdown, training_renders,
};
use suti_eval::subjects::subjects_from_benchmark;

#[test]
fn the_reported_subject_metric_passes_the_sanity_check_on_held_out_subjects() {
    let assets = Assets::open_default().expect("EmojiWorld assets (scripts/fetch-assets)");
    let tower = suti_factory::towers::load_image_tower(
        &suti_factory::towers::image_tower_path(""),
        &candle_core::Device::Cpu,
    )
    .expect("image tower weights (scripts/fetch-assets)");
    let dir = tempfile::tempdir().unwrap();
    // Six subjects: three classes, both drawings of each.
    write_benchmark(&assets, dir.path(), 64, 0, 6).unwrap();
    let subjects = subjects_from_benchmark(dir.path(), 6, 3, "sks").unwrap();
    assert_eq!(subjects.len(), 6);
    for s in &subjects {
        assert_eq!(s.distractors.len(), 7, "{}", s.id);
        assert!(s.distractors[0].same_class, "the other drawing comes first");
        assert!(s.matched_contexts);
    }
    let cases = sanity_cases(&assets, &subjects, 64, 32).unwrap();
    assert_eq!(cases.len(), 18);
    // The true image of the check is the set's own true image, bit for bit.
    assert_eq!(
        cases[0].a,
        subjects[0].prompts[0]
            .truth
            .as_ref()
            .unwrap()
            .centre_square(32)
    );
    let centring = training_renders(&assets, CENTRING_RENDERS, 64, 32, 0).unwrap();
    let inputs = SanityInputs {
        subjects: &subjects,
        cases: &cases,
        centring_images: &centring,
        side: 32,
    };
    let reported = MetricVariant::REPORTED;
    let rows = run_sanity(
        &tower,
        &inputs,
        &[reported.reading.tap],
        &[reported.reading.input],
        &[reported.reading.crop],
        |_| {},
    )
    .unwrap();
    println!("{}", sanity_markdown(&rows));
    let row = rows.iter().find(|r| r.metric == reported).unwrap();
    assert!(
        row.auc_other_class >= MIN_AUC_OTHER_CLASS,
        "AUC A vs B {:.3}",
        row.auc_other_class
    );
    assert!(
        row.auc_other_drawing >= MIN_AUC_OTHER_DRAWING,
        "AUC A vs A′ {:.3}",
        row.auc_other_drawing
    );
    assert!(
        row.blur_shift.abs() < row.gap_other_class,
        "blur shift {:.3} against the A−B gap {:.3}",
        row.blur_shift,
        row.gap_other_class
    );
    assert!(row.fit);
    // The raw similarity the protocol used to report does not separate the drawings: the check
    // can fail a metric.
    let raw = rows
        .iter()
        .find(|r| r.metric.score == suti_eval::sanity::ScoreKind::Similarity && !r.metric.centred)
        .unwrap();
    assert!(
        raw.auc_other_drawing < row.auc_other_drawing,
        "raw {:.3} against reported {:.3}",
        raw.auc_other_drawing,
        row.auc_other_drawing
    );
}
