//! The diagnostic apprentice job (`suti train apprentice`): an apprentice trained from the stored
//! base on the renderer's true images of many training-split subjects, or on the pipeline's
//! accepted triplets, measured on held-out subjects with their own, another subject's and no
//! demonstrations as it trains, and published as the latest apprentice release. It compares
//! training recipes outside the pipeline; it is never the pipeline's default.

use std::time::Instant;

use anyhow::bail;
use suti_data::Split;
use suti_runtime::SutiConfig;
use suti_runtime::config::{ApprenticeDemoAttention, ApprenticeStageConfig};
use suti_storage::SharedStore;

use super::{JobProgress, JobResult, emojiworld_assets};
use crate::apprentice::{
    DemoChoice, SubjectNaming, apprentice_evaluation_loss, apprentice_step, apprentice_trainer,
};
use crate::artifacts::{BASE_MODEL, publish_release, read_shard};
use crate::training::DenoiserTrainer;
use crate::true_triplets::{TrueTripletSettings, true_triplet_subjects, true_triplets};

/// Targets per held-out subject in the job's evaluation loss.
pub const HELD_OUT_TARGETS: usize = 4;

/// The targets the diagnostic apprentice trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprenticeTargets {
    /// The renderer's true images of each subject in each prompted scene.
    TrueRenders,
    /// The pipeline's accepted triplets under `datasets/apprentice/`, read as the
    /// apprentice-trainer reads them.
    Accepted,
}

/// A diagnostic apprentice run.
#[derive(Debug, Clone)]
pub struct ApprenticeJob {
    /// Where the targets come from.
    pub targets: ApprenticeTargets,
    /// Training-split subjects the true-image triplets are made of.
    pub subjects: usize,
    /// Targets per subject.
    pub targets_per_subject: usize,
    /// Leaves out the first this many subjects of the draw and every subject of their classes.
    pub skip_subjects: usize,
    /// Share of the targets whose prompt says a generic word instead of the class noun (0 to 1).
    pub generic_nouns: f32,
    /// How the apprentice reads its demonstrations.
    pub demo_attention: ApprenticeDemoAttention,
    /// Optimiser steps.
    pub steps: u64,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Held-out subjects the evaluation loss is measured on.
    pub held_out: usize,
    /// Seed of the triplets, the new weights, batches and noise.
    pub seed: u64,
}

/// Held-out evaluation losses with each kind of demonstrations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOutLosses {
    /// The subject's own demonstrations.
    pub own: f32,
    /// Another subject's.
    pub other: f32,
    /// None.
    pub without: f32,
}

impl HeldOutLosses {
    /// How much worse another subject's demonstrations do than its own: what reading them buys.
    pub fn gap(&self) -> f32 {
        self.other - self.own
    }
}

/// What a diagnostic apprentice run published and measured.
#[derive(Debug, Clone)]
pub struct ApprenticeJobOutcome {
    /// The published release.
    pub version: String,
    /// Held-out losses before the first step.
    pub before: HeldOutLosses,
    /// The same after the last.
    pub after: HeldOutLosses,
    /// Wall time of the training steps, seconds.
    pub seconds: f64,
}

/// Trains a diagnostic apprentice from the stored base and publishes it.
pub async fn train_apprentice(
    store: &SharedStore,
    config: &SutiConfig,
    job: &ApprenticeJob,
    progress: &dyn JobProgress,
) -> JobResult<ApprenticeJobOutcome> {
    if !(0.0..=1.0).contains(&job.generic_nouns) {
        bail!(
            "--generic-nouns is a share, from 0 to 1 (got {})",
            job.generic_nouns
        );
    }
    let device = crate::device::model_device(config.models.device)?;
    let text = crate::towers::configured_text_encoder(&config.models.text_encoder, &device)?;
    let assets = emojiworld_assets()?;
    let (_, base) = suti_stage::VersionedModels::new(
        BASE_MODEL,
        store.clone(),
        crate::artifacts::base_loader(device.clone()),
    )
    .latest()
    .await
    .map_err(|e| anyhow::anyhow!("loading the base model (train one first): {e}"))?;
    let size = base.config.image_size;
    let train = ApprenticeStageConfig {
        schedule_steps: job.steps,
        batch: job.batch,
        learning_rate: job.learning_rate,
        seed: job.seed,
        demo_attention: job.demo_attention,
        generic_noun_share: job.generic_nouns,
        ..config.apprentice.clone()
    };
    let settings = TrueTripletSettings {
        subjects: job.subjects,
        targets_per_subject: job.targets_per_subject,
        skip_subjects: job.skip_subjects,
        seed: job.seed,
        generic_noun_share: job.generic_nouns,
        ..TrueTripletSettings::default()
    };
    let train_subjects = true_triplet_subjects(&assets, Split::Train, &settings);
    let held_subjects = true_triplet_subjects(
        &assets,
        Split::HeldOut,
        &TrueTripletSettings {
            subjects: job.held_out,
            skip_subjects: 0,
            targets_per_subject: HELD_OUT_TARGETS,
            seed: job.seed ^ 0x5eed,
            ..settings.clone()
        },
    );
    let rendered = match job.targets {
        ApprenticeTargets::TrueRenders => train_subjects.len() + held_subjects.len(),
        ApprenticeTargets::Accepted => held_subjects.len(),
    };
    let phase = progress.phase("true triplets", "triplets", rendered as u64);
    let (triplets, described) = match job.targets {
        ApprenticeTargets::TrueRenders => (
            true_triplets(
                &assets,
                &train_subjects,
                &settings,
                &text,
                size,
                &mut || phase.advance(1),
            )?,
            format!("true images of {} training subjects", train_subjects.len()),
        ),
        ApprenticeTargets::Accepted => {
            let naming = SubjectNaming::of(&train);
            let mut all = Vec::new();
            let mut shards = 0;
            for object in store
                .list(suti_storage::layout::APPRENTICE_SHARDS_PREFIX)
                .await?
            {
                let read = read_shard(store, object.key.as_str(), size, &text, &naming)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", object.key))?;
                shards += usize::from(!read.is_empty());
                all.extend(read);
            }
            if all.is_empty() {
                bail!(
                    "no accepted triplets in storage (datasets/apprentice/): run the pipeline first"
                );
            }
            (all, format!("accepted examples of {shards} clusters"))
        }
    };
    let held = true_triplets(
        &assets,
        &held_subjects,
        &TrueTripletSettings {
            targets_per_subject: HELD_OUT_TARGETS,
            // Held-out prompts name their class, as the evaluation's do.
            generic_noun_share: 0.0,
            ..settings.clone()
        },
        &text,
        size,
        &mut || phase.advance(1),
    )?;
    phase.finish();
    progress.note(&format!(
        "{} training triplets ({described}), {} held-out triplets of {} subjects",
        triplets.len(),
        held.len(),
        held_subjects.len()
    ));
    let mut trainer = apprentice_trainer(&base, &train)?;
    let losses = |trainer: &DenoiserTrainer| -> JobResult<HeldOutLosses> {
        let loss = |choice| apprentice_evaluation_loss(trainer.model(), &held, 3, choice, &text, 7);
        Ok(HeldOutLosses {
            own: loss(DemoChoice::Own)?,
            other: loss(DemoChoice::Other)?,
            without: loss(DemoChoice::Without)?,
        })
    };
    let before = losses(&trainer)?;
    progress.note(&held_out_line("before", &before));
    let phase = progress.phase("apprentice", "steps", job.steps);
    let started = Instant::now();
    let mut smoothed = None::<f32>;
    let mut history = crate::training::LossHistory::new();
    let every = (job.steps / 10).max(1);
    while !trainer.finished() {
        let loss = tokio::task::block_in_place(|| {
            apprentice_step(&mut trainer, &triplets, &train, &text)
        })?;
        let s = smoothed.map_or(loss, |s| 0.98 * s + 0.02 * loss);
        smoothed = Some(s);
        phase.set_status(format!("loss {s:.4}"));
        phase.advance(1);
        let step = trainer.steps_done();
        history.record(step, loss);
        if step % every == 0 && !trainer.finished() {
            // The held-out gap as it grows: the curve to pick a step count from.
            let now = losses(&trainer)?;
            progress.note(&format!(
                "apprentice: step {step}/{} at {:.0} s: loss {s:.4}; held-out own {:.4}, other \
                 {:.4}, gap {:.4}",
                job.steps,
                started.elapsed().as_secs_f64(),
                now.own,
                now.other,
                now.gap()
            ));
        }
    }
    phase.finish();
    let seconds = started.elapsed().as_secs_f64();
    let after = losses(&trainer)?;
    progress.note(&held_out_line("after", &after));
    let version = publish_release(store, &trainer, &history)
        .await
        .map_err(|e| anyhow::anyhow!("publishing the apprentice: {e}"))?;
    progress.note(&format!(
        "apprentice ({:?} demonstration attention): {} steps of {} in {seconds:.0} s ({:.2} s per \
         step)",
        crate::apprentice::demo_attention(train.demo_attention),
        job.steps,
        job.batch,
        seconds / job.steps.max(1) as f64
    ));
    Ok(ApprenticeJobOutcome {
        version,
        before,
        after,
        seconds,
    })
}

/// The held-out losses as the job's log states them.
fn held_out_line(when: &str, losses: &HeldOutLosses) -> String {
    format!(
        "held-out evaluation loss {when}: own demonstrations {:.4}, another subject's {:.4} (gap \
         {:.4}), none {:.4}",
        losses.own,
        losses.other,
        losses.gap(),
        losses.without
    )
}
