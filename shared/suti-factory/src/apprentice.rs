//! The apprentice (architecture.md §7.7): the base model's network with demonstration tokens,
//! initialised from the base and trained on the accepted (demonstrations, prompt, target) triplets.
//! Each example draws how many demonstrations it sees (1–5 by default) and which, so one model
//! learns to work from any number; condition dropout (text, demonstrations, both) gives guidance
//! its unconditional branches.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use suti_models::diffusion::ConditionDropout;
use suti_models::text::TextEncoder;
use suti_models::{Builders, DemoAttention, Demos, Dit, DitConfig, Params};
use suti_rng::SplitMix64;
use suti_runtime::config::{ApprenticeDemoAttention, ApprenticeStageConfig};

use crate::bundle::BaseModel;
use crate::pixels::batch_tensor;
use crate::training::{Batch, DenoiserTrainer, LoopSettings};
use crate::{FactoryError, Result};

/// How the apprentice's network reads its demonstrations, as the configuration chooses it.
pub fn demo_attention(choice: ApprenticeDemoAttention) -> DemoAttention {
    match choice {
        ApprenticeDemoAttention::Shared => DemoAttention::Shared,
        ApprenticeDemoAttention::Gated => DemoAttention::Gated,
        ApprenticeDemoAttention::GatedFinetuned => DemoAttention::GatedFinetuned,
    }
}

/// A cluster's demonstrations, shared by all its examples.
#[derive(Debug)]
pub struct DemoSet {
    /// Images at the model's side, `(3, s, s)` in [-1, 1].
    pub images: Vec<Vec<f32>>,
    /// Pooled sentence vectors of their captions.
    pub pooled: Vec<Vec<f32>>,
    /// A gated apprentice's frozen states of these demonstrations, `(k, depth, tokens, width)`,
    /// computed by the first training step that needs them (they depend only on the frozen base).
    pub frozen_states: OnceLock<Tensor>,
}

impl DemoSet {
    /// Demonstrations from images (already at the model's side) and their captions.
    pub fn new(images: Vec<Vec<f32>>, captions: &[String], text: &TextEncoder) -> Result<Self> {
        if images.is_empty() || images.len() != captions.len() {
            return Err(FactoryError::Invalid(
                "demonstrations need one caption per image and at least one image".into(),
            ));
        }
        let pooled = captions
            .iter()
            .map(|c| text.sentence_vector(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            images,
            pooled,
            frozen_states: OnceLock::new(),
        })
    }
}

/// One training triplet.
#[derive(Debug, Clone)]
pub struct Triplet {
    /// The cluster's demonstrations.
    pub demos: Arc<DemoSet>,
    /// The prompt, with the class noun alone.
    pub prompt: String,
    /// The target image, `(3, s, s)` in [-1, 1].
    pub target: Vec<f32>,
}

/// How an apprentice's training prompts name their subject. A share of them say a generic word
/// instead of the class noun, so that only the demonstrations tell what the subject is: an
/// apprentice whose base already draws every training subject from its noun has nothing to learn
/// from reading (docs/results.md, "the shortcut through the noun").
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectNaming {
    /// Share of the prompts that say `generic_word` (0: every prompt keeps its noun; 1: none).
    pub generic_share: f32,
    /// The word said instead of the noun (`thing`).
    pub generic_word: String,
    /// Seed of which prompts are renamed.
    pub seed: u64,
}

impl SubjectNaming {
    /// The naming the apprentice-trainer's configuration asks for.
    pub fn of(config: &ApprenticeStageConfig) -> Self {
        Self {
            generic_share: config.generic_noun_share,
            generic_word: config.generic_noun.clone(),
            seed: config.seed,
        }
    }

    /// Every prompt keeps its class noun.
    pub fn class_nouns() -> Self {
        Self {
            generic_share: 0.0,
            generic_word: "thing".into(),
            seed: 0,
        }
    }

    /// The prompt of example `index` of `cluster`: `prompt` as it is, or, for a deterministic
    /// `generic_share` of the examples, with its first whole-word `noun` replaced by the generic
    /// word. A prompt that does not contain the noun is kept.
    pub fn name(&self, prompt: &str, noun: &str, cluster: &str, index: usize) -> String {
        let renamed = SplitMix64::derive(self.seed, &format!("subject-naming/{cluster}/{index}"))
            .chance(self.generic_share);
        match crate::prompts::whole_word(prompt, noun) {
            Some(found) if renamed => format!(
                "{}{}{}",
                &prompt[..found.start],
                self.generic_word,
                &prompt[found.end..]
            ),
            _ => prompt.to_string(),
        }
    }
}

/// The apprentice's shape: the base's, taking up to 8 demonstrations, read as `attention` says.
pub fn apprentice_shape(base: &DitConfig, attention: DemoAttention) -> DitConfig {
    DitConfig {
        max_demos: 8,
        demo_attention: attention,
        ..base.clone()
    }
}

/// An apprentice in training, initialised from `base` (the demonstration embeddings, and for a
/// gated apprentice its readers, are new). A shared apprentice trains every weight; a gated one
/// trains its readers over the frozen base, whose weights its releases carry unchanged; a
/// fine-tuned gated one trains every weight, its demonstrations encoded by a frozen copy of the
/// base that its releases carry.
pub fn apprentice_trainer(
    base: &BaseModel,
    config: &ApprenticeStageConfig,
) -> Result<DenoiserTrainer> {
    let device = base.device()?;
    let varmap = VarMap::new();
    let attention = demo_attention(config.demo_attention);
    let shape = apprentice_shape(&base.config, attention);
    let start_from_base = || -> Result<()> {
        let mut vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        for (name, tensor) in &base.tensors {
            vars.insert(name.clone(), Var::from_tensor(tensor)?);
        }
        Ok(())
    };
    // The weights that stay as the base made them: a gated apprentice's whole network, a
    // fine-tuned gated one's demonstration encoder (a copy of the base under its own prefix).
    let frozen: HashMap<String, Tensor> = match attention {
        DemoAttention::Shared => HashMap::new(),
        DemoAttention::Gated => base.tensors.clone(),
        DemoAttention::GatedFinetuned => base
            .tensors
            .iter()
            .map(|(name, t)| (format!("demo_encoder.{name}"), t.clone()))
            .collect(),
    };
    let params = match attention {
        DemoAttention::Shared => {
            start_from_base()?;
            Params::train(&varmap, config.seed, &device)
        }
        DemoAttention::Gated => Params::extend(frozen.clone(), &varmap, config.seed, &device),
        DemoAttention::GatedFinetuned => {
            start_from_base()?;
            Params::extend(frozen.clone(), &varmap, config.seed, &device)
        }
    };
    if config.min_demos == 0
        || config.min_demos > config.max_demos
        || config.max_demos > shape.max_demos
    {
        return Err(FactoryError::Invalid(format!(
            "demonstrations per example must be within 1..={} (got {}..={})",
            shape.max_demos, config.min_demos, config.max_demos
        )));
    }
    let model = Dit::new(&shape, &Builders::base(params))?;
    let trainer = DenoiserTrainer::new(
        model,
        varmap,
        LoopSettings {
            steps: config.schedule_steps,
            batch: config.batch,
            learning_rate: config.learning_rate,
            warmup: config.warmup,
            dropout: ConditionDropout::default(),
            flip: false,
            clip_norm: 1.0,
            seed: config.seed,
        },
        &device,
    )?;
    Ok(trainer.with_frozen(frozen))
}

/// A random batch of `triplets`: each example with between `min_demos` and `max_demos` of its
/// cluster's demonstrations (distinct, as many as it has), padded and masked; with
/// `frozen_states`, also the demonstrations' frozen states (a gated apprentice's, which
/// [`cache_frozen_states`] must have computed).
#[allow(clippy::too_many_arguments)]
pub fn apprentice_batch(
    triplets: &[Triplet],
    batch: usize,
    (min_demos, max_demos): (usize, usize),
    size: usize,
    text: &TextEncoder,
    rng: &mut SplitMix64,
    device: &Device,
    frozen_states: bool,
) -> Result<Batch> {
    if triplets.is_empty() {
        return Err(FactoryError::Invalid("no training triplets".into()));
    }
    let picks: Vec<usize> = (0..batch).map(|_| rng.below(triplets.len())).collect();
    let chosen: Vec<Vec<usize>> = picks
        .iter()
        .map(|&i| {
            let available = triplets[i].demos.images.len();
            let hi = max_demos.min(available);
            let lo = min_demos.min(hi);
            let count = lo + rng.below(hi - lo + 1);
            let mut order: Vec<usize> = (0..available).collect();
            for k in 0..count {
                let j = k + rng.below(available - k);
                order.swap(k, j);
            }
            order.truncate(count);
            order
        })
        .collect();
    let width = chosen.iter().map(Vec::len).max().unwrap_or(1);
    let rows: Vec<(&DemoSet, &[usize])> = picks
        .iter()
        .zip(&chosen)
        .map(|(&i, demos)| (&*triplets[i].demos, demos.as_slice()))
        .collect();
    let demos = pack_demos(&rows, width, size, device)?;
    let targets: Vec<&[f32]> = picks
        .iter()
        .map(|&i| triplets[i].target.as_slice())
        .collect();
    let prompts: Vec<&str> = picks.iter().map(|&i| triplets[i].prompt.as_str()).collect();
    let demo_states = if frozen_states {
        let mut rows = Vec::with_capacity(batch);
        for (&i, demos) in picks.iter().zip(&chosen) {
            let states = triplets[i].demos.frozen_states.get().ok_or_else(|| {
                FactoryError::Invalid("demonstration states were not computed".into())
            })?;
            let mut slots: Vec<Tensor> = demos
                .iter()
                .map(|&d| states.get(d))
                .collect::<candle_core::Result<_>>()?;
            // Padding slots are masked; their states only need the right shape.
            while slots.len() < width {
                slots.push(slots[0].zeros_like()?);
            }
            rows.push(Tensor::stack(&slots, 0)?);
        }
        Some(Tensor::stack(&rows, 0)?)
    } else {
        None
    };
    Ok(Batch {
        x0: batch_tensor(&targets, size, device)?,
        text: text.encode(&prompts)?,
        demos: Some(demos),
        demo_states,
    })
}

/// Demonstrations for a batch: row `b` holds the demonstrations `picked` of its set, in order,
/// padded with masked slots to `width`.
pub(crate) fn pack_demos(
    rows: &[(&DemoSet, &[usize])],
    width: usize,
    size: usize,
    device: &Device,
) -> Result<Demos> {
    let plane = 3 * size * size;
    let text_dim = rows
        .first()
        .map(|(set, _)| set.pooled[0].len())
        .ok_or_else(|| FactoryError::Invalid("no demonstrations to pack".into()))?;
    let b = rows.len();
    let mut images = vec![0f32; b * width * plane];
    let mut pooled = vec![0f32; b * width * text_dim];
    let mut mask = vec![0f32; b * width];
    for (row, (set, picked)) in rows.iter().enumerate() {
        for (slot, &d) in picked.iter().enumerate() {
            let at = row * width + slot;
            images[at * plane..(at + 1) * plane].copy_from_slice(&set.images[d]);
            pooled[at * text_dim..(at + 1) * text_dim].copy_from_slice(&set.pooled[d]);
            mask[at] = 1.0;
        }
    }
    Ok(Demos {
        images: Tensor::from_vec(images, (b, width, 3, size, size), device)?,
        pooled: Tensor::from_vec(pooled, (b, width, text_dim), device)?,
        mask: Tensor::from_vec(mask, (b, width), device)?,
    })
}

/// Computes the frozen states of every demonstration set of `triplets` that lacks them, with
/// `model`, a gated apprentice over its frozen base (a set is computed once, then reused by
/// every step that draws it).
pub fn cache_frozen_states(model: &Dit, triplets: &[Triplet]) -> Result<()> {
    let size = model.config().image_size;
    let device = model.device().clone();
    for triplet in triplets {
        let set = &triplet.demos;
        if set.frozen_states.get().is_some() {
            continue;
        }
        let k = set.images.len();
        let images: Vec<f32> = set.images.iter().flatten().copied().collect();
        let pooled: Vec<f32> = set.pooled.iter().flatten().copied().collect();
        let text_dim = set.pooled[0].len();
        let states = model.demo_states(
            &Tensor::from_vec(images, (k, 3, size, size), &device)?,
            &Tensor::from_vec(pooled, (k, text_dim), &device)?,
        )?;
        // Another thread may have filled it meanwhile; either value is the same.
        let _ = set.frozen_states.set(states);
    }
    Ok(())
}

/// One apprentice training step on `triplets`.
pub fn apprentice_step(
    trainer: &mut DenoiserTrainer,
    triplets: &[Triplet],
    config: &ApprenticeStageConfig,
    text: &TextEncoder,
) -> Result<f32> {
    let size = trainer.config().image_size;
    let device = trainer.device().clone();
    // A gated apprentice's demonstrations pass through the frozen base, so their states are
    // computed once rather than at every step.
    let frozen = trainer.config().demo_attention.is_gated();
    if frozen {
        cache_frozen_states(trainer.model(), triplets)?;
    }
    trainer.step_with(|rng| {
        apprentice_batch(
            triplets,
            config.batch,
            (config.min_demos, config.max_demos),
            size,
            text,
            rng,
            &device,
            frozen,
        )
    })
}

/// Which demonstrations the apprentice's evaluation loss gives each triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoChoice {
    /// The triplet's own subject's.
    Own,
    /// Another subject's (the next demonstration set in the list): what the loss would be if
    /// the apprentice ignored whose demonstrations it saw.
    Other,
    /// None: the apprentice as a text-to-image model.
    Without,
}

/// The mean v-loss of `model` over `triplets`, each shown the first `demos` demonstrations of the
/// set `choice` names, at fixed times and noise (from `seed`). An apprentice that reads its
/// demonstrations has a lower loss with its own than with another subject's; one that does not,
/// the same.
pub fn apprentice_evaluation_loss(
    model: &Dit,
    triplets: &[Triplet],
    demos: usize,
    choice: DemoChoice,
    text: &TextEncoder,
    seed: u64,
) -> Result<f32> {
    if triplets.is_empty() || demos == 0 {
        return Err(FactoryError::Invalid(
            "the evaluation loss needs triplets and at least one demonstration".into(),
        ));
    }
    let size = model.config().image_size;
    let device = model.device().clone();
    // The demonstration set each triplet is shown.
    let shown: Vec<&Arc<DemoSet>> = (0..triplets.len())
        .map(|i| match choice {
            DemoChoice::Own | DemoChoice::Without => &triplets[i].demos,
            DemoChoice::Other => (1..triplets.len())
                .map(|k| &triplets[(i + k) % triplets.len()].demos)
                .find(|d| !Arc::ptr_eq(d, &triplets[i].demos))
                .unwrap_or(&triplets[i].demos),
        })
        .collect();
    let mut rng = SplitMix64::derive(seed, "apprentice-evaluation");
    let mut total = 0.0;
    for (chunk, sets) in triplets.chunks(16).zip(shown.chunks(16)) {
        let targets: Vec<&[f32]> = chunk.iter().map(|t| t.target.as_slice()).collect();
        let prompts: Vec<&str> = chunk.iter().map(|t| t.prompt.as_str()).collect();
        let x0 = batch_tensor(&targets, size, &device)?;
        let cond = text.encode(&prompts)?;
        let cache = match choice {
            DemoChoice::Without => None,
            DemoChoice::Own | DemoChoice::Other => {
                let first: Vec<Vec<usize>> = sets
                    .iter()
                    .map(|set| (0..demos.min(set.images.len())).collect())
                    .collect();
                let rows: Vec<(&DemoSet, &[usize])> = sets
                    .iter()
                    .zip(&first)
                    .map(|(set, picked)| (&***set, picked.as_slice()))
                    .collect();
                Some(model.encode_demos(&pack_demos(&rows, demos, size, &device)?)?)
            }
        };
        let loss = suti_models::diffusion::v_loss(model, &x0, &cond, cache.as_ref(), &mut rng)?
            .to_scalar::<f32>()?;
        total += loss * chunk.len() as f32;
    }
    Ok(total / triplets.len() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(share: f32) -> SubjectNaming {
        SubjectNaming {
            generic_share: share,
            ..SubjectNaming::class_nouns()
        }
    }

    #[test]
    fn generic_naming_replaces_the_whole_noun_for_its_share_of_the_examples() {
        let prompt = "a cat on a cat bed";
        assert_eq!(
            naming(1.0).name(prompt, "cat", "c1", 0),
            "a thing on a cat bed"
        );
        assert_eq!(naming(0.0).name(prompt, "cat", "c1", 0), prompt);
        // Not inside a longer word, and a prompt without the noun is kept.
        assert_eq!(
            naming(1.0).name("a caterpillar beside a cat", "cat", "c1", 0),
            "a caterpillar beside a thing"
        );
        assert_eq!(naming(1.0).name("a dog", "cat", "c1", 0), "a dog");
        // A share renames about that share of the examples, the same ones every time.
        let half = naming(0.5);
        let renamed: Vec<bool> = (0..400)
            .map(|i| half.name("a red teapot", "teapot", "c7", i) != "a red teapot")
            .collect();
        let count = renamed.iter().filter(|&&r| r).count();
        assert!((160..=240).contains(&count), "{count} of 400 renamed");
        let again: Vec<bool> = (0..400)
            .map(|i| half.name("a red teapot", "teapot", "c7", i) != "a red teapot")
            .collect();
        assert_eq!(renamed, again);
    }
}
