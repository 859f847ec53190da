//! The `generator` section: how each expert renders its subject in new contexts.

use serde::{Deserialize, Serialize};

use super::choice::named_choice;

/// A family of DreamBench prompt templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateFamily {
    /// The subject in a new place (`a teapot on the beach`).
    Recontextualisation,
    /// The subject wearing something (animals only).
    Accessorisation,
    /// The subject with a property changed (`a red teapot`).
    Property,
}

named_choice!(TemplateFamily {
    Recontextualisation = "recontextualisation",
    Accessorisation = "accessorisation",
    Property = "property",
});

/// A denoising sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerChoice {
    /// DDIM.
    Ddim,
    /// DPM-Solver++(2M).
    DpmSolver2m,
}

named_choice!(SamplerChoice {
    Ddim = "ddim",
    DpmSolver2m = "dpm_solver2m",
});

/// generator: how each expert renders its subject in new contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Prompts per cluster.
    pub prompts_per_cluster: usize,
    /// Images per prompt.
    pub images_per_prompt: usize,
    /// Template families the prompts are drawn from.
    pub families: Vec<TemplateFamily>,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance weight.
    pub guidance: f32,
    /// The sampler.
    pub sampler: SamplerChoice,
    /// Images denoised together at most.
    pub max_batch: usize,
    /// Seed mixed with each cluster's id.
    pub seed: u64,
}

impl GeneratorConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.prompts_per_cluster == 0
            || self.images_per_prompt == 0
            || self.steps == 0
            || self.max_batch == 0
        {
            problems.push(
                "generator.prompts_per_cluster, images_per_prompt, steps and max_batch must be at least 1"
                    .into(),
            );
        }
        if self.families.is_empty() {
            problems.push("generator.families must list at least one template family".into());
        }
    }
}
