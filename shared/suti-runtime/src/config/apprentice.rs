//! The `apprentice` section: apprentice-trainer's continuous training.

use serde::{Deserialize, Serialize};

use super::choice::named_choice;

/// How the apprentice reads its demonstrations (the model's `DemoAttention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprenticeDemoAttention {
    /// The target attends to [own | text | demonstrations] in one softmax, and every weight of
    /// the base trains.
    Shared,
    /// A zero-initialised reader per block attends to the frozen base's states of the
    /// demonstrations; only the readers train (about 4× cheaper a step, and it reads them).
    #[default]
    Gated,
    /// The gated readers with the whole network fine-tuned, the demonstrations encoded by a
    /// frozen copy of the base (releases twice the size).
    GatedFinetuned,
}

named_choice!(ApprenticeDemoAttention {
    Shared = "shared",
    Gated = "gated",
    GatedFinetuned = "gated_finetuned",
});

/// apprentice-trainer: continuous training on the accepted triplets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprenticeStageConfig {
    /// How the apprentice reads its demonstrations.
    #[serde(default)]
    pub demo_attention: ApprenticeDemoAttention,
    /// Share of the training prompts that name the subject by `generic_noun` instead of its class
    /// noun, so that only the demonstrations tell what the subject is (0 to 1).
    #[serde(default)]
    pub generic_noun_share: f32,
    /// The word those prompts say instead of the class noun.
    #[serde(default = "generic_noun")]
    pub generic_noun: String,
    /// Steps the learning-rate schedule spans (training continues at the final rate after).
    pub schedule_steps: u64,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Fewest demonstrations per example.
    pub min_demos: usize,
    /// Most demonstrations per example.
    pub max_demos: usize,
    /// Seed of the new weights, batches and noise.
    pub seed: u64,
    /// Steps between checkpoints (weights, optimiser moments, generator state).
    pub checkpoint_every: u64,
    /// Steps between releases (`apprentice.published`).
    pub release_every: u64,
    /// How often the trainer looks for newly indexed shards, seconds.
    pub refresh_secs: u64,
    /// Indexed shards (one per cluster) a fresh run waits for before its first step, so that
    /// it does not learn the first clusters alone.
    #[serde(default = "one")]
    pub start_shards: usize,
    /// The longest a fresh run waits for `start_shards` after the first shard came, seconds;
    /// then it starts with the shards it has.
    #[serde(default)]
    pub start_wait_secs: u64,
}

impl ApprenticeStageConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.batch == 0
            || self.checkpoint_every == 0
            || self.release_every == 0
            || self.refresh_secs == 0
        {
            problems.push(
                "apprentice.batch, checkpoint_every, release_every and refresh_secs must be at least 1"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.generic_noun_share) {
            problems.push(format!(
                "apprentice.generic_noun_share is a share, from 0 to 1 (got {})",
                self.generic_noun_share
            ));
        }
        if self.generic_noun.trim().is_empty() {
            problems.push("apprentice.generic_noun must be a word".into());
        }
        if self.min_demos == 0 || self.min_demos > self.max_demos || self.max_demos > 8 {
            problems.push(
                "apprentice demonstrations must satisfy 1 <= min_demos <= max_demos <= 8".into(),
            );
        }
    }
}

fn one() -> usize {
    1
}

fn generic_noun() -> String {
    "thing".into()
}
