//! The `expert` section: expert-finetuner's LoRA fine-tune.

use serde::{Deserialize, Serialize};

/// expert-finetuner: the LoRA fine-tune of one expert per cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertStageConfig {
    /// Optimiser steps per expert (the paper: 500).
    pub steps: u64,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA scale numerator (the update is scaled by alpha / rank).
    pub alpha: f32,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Images per step.
    pub batch: usize,
    /// Rare token placed before the subject noun.
    pub identifier_token: String,
    /// Seed mixed with each cluster's id.
    pub seed: u64,
}

impl ExpertStageConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.steps == 0 || self.rank == 0 || self.batch == 0 {
            problems.push("expert.steps, expert.rank and expert.batch must be at least 1".into());
        }
        if self.identifier_token.split_whitespace().count() != 1 {
            problems.push("expert.identifier_token must be one word".into());
        }
    }
}
