//! What an evaluation run reads before the protocol starts, for `suti eval` and `suti demo`
//! alike: a run's models from storage (the base, the apprentice release and the scorer by their
//! `LATEST` pointers, and the frozen towers), the subject encoder and image–text scorer chosen,
//! the evaluation set (EmojiWorld's held-out subjects rendered on the spot, a stored benchmark, or
//! the real DreamBench folder), and the experts' recipe.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use suti_data::Assets;
use suti_data::benchmark::write_benchmark;
use suti_factory::render::LoadedModel;
use suti_factory::{BaseModel, ScorerModel};
use suti_models::image_tower::ImageTower;
use suti_models::reference::{ClipEncoder, Dinov2Encoder};
use suti_models::text::TextEncoder;
use suti_runtime::SutiConfig;
use suti_runtime::config::ExpertStageConfig;
use suti_storage::SharedStore;
use suti_storage::layout::{APPRENTICE_MODEL, BASE_MODEL, SCORER_MODEL};

use crate::features::{ImageTextScorer, SubjectEncoder, TowerReading, stored_centring};
use crate::protocol::EvalModels;
use crate::subjects::{EvalSubject, subjects_from_benchmark, subjects_from_dreambench};

/// Side of the EmojiWorld evaluation set's photos: demonstrations as large as crawled ones,
/// reduced to the model's side when used.
pub const BENCHMARK_SIDE: u32 = 64;

/// The subject encoder the metrics use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SubjectEncoderChoice {
    /// EfficientNet-Lite0 read as the sanity check chose (docs/eval.md).
    #[default]
    Tower,
    /// DINOv2 ViT-S/14 from a Hugging Face folder (DreamBench's DINO).
    Dinov2(PathBuf),
}

/// The image–text scorer that gives CLIP-I and CLIP-T.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ScorerChoice {
    /// The project's scorer from storage.
    #[default]
    Trained,
    /// CLIP ViT-B/32 from a Hugging Face folder (DreamBench's CLIP-I and CLIP-T).
    Clip(PathBuf),
}

/// Where the evaluation subjects come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalSetSource {
    /// EmojiWorld's held-out subjects, rendered into `<out>/benchmark` with this seed.
    EmojiWorld {
        /// Seed of the renders.
        seed: u64,
    },
    /// A set written by `suti synthweb benchmark` (its folder, with manifest.json).
    Benchmark(PathBuf),
    /// The real DreamBench folder (`dataset/` of google/dreambooth).
    DreamBench(PathBuf),
}

/// An evaluation set, ready for the protocol.
#[derive(Debug)]
pub struct EvalSet {
    /// How reports name it.
    pub name: String,
    /// Its folder (where centring means are kept).
    pub dir: PathBuf,
    /// Its subjects.
    pub subjects: Vec<EvalSubject>,
}

/// The models of a run, as stored.
pub struct StoredModels {
    /// The base.
    pub base: Arc<BaseModel>,
    /// The apprentice release.
    pub apprentice: LoadedModel,
    /// The scorer's heads.
    pub scorer: Arc<ScorerModel>,
    /// The image tower.
    pub tower: Arc<ImageTower>,
    /// MiniLM.
    pub text: Arc<TextEncoder>,
}

/// Loads the base, scorer and apprentice named by their `LATEST` pointers, and the towers.
pub async fn load_models(store: &SharedStore, config: &SutiConfig) -> anyhow::Result<StoredModels> {
    let device = suti_factory::device::model_device(config.models.device)?;
    let latest = |name: &'static str, what: &'static str| async move {
        let key = suti_stage::models::latest_key(name)?;
        suti_storage::read_pointer(store.as_ref(), &key)
            .await?
            .with_context(|| format!("no {what} in storage (models/{name}/LATEST)"))
    };
    let base_version = latest(BASE_MODEL, "base model").await?;
    let apprentice_version = latest(APPRENTICE_MODEL, "apprentice release").await?;
    let base = suti_stage::VersionedModels::new(
        BASE_MODEL,
        store.clone(),
        suti_factory::artifacts::base_loader(device.clone()),
    )
    .version(&base_version)
    .await
    .map_err(|e| anyhow::anyhow!("loading the base model: {e}"))?;
    let apprentice = suti_stage::VersionedModels::new(
        APPRENTICE_MODEL,
        store.clone(),
        suti_factory::artifacts::dit_loader(APPRENTICE_MODEL, device.clone()),
    )
    .version(&apprentice_version)
    .await
    .map_err(|e| anyhow::anyhow!("loading the apprentice: {e}"))?;
    let (_, scorer) = suti_stage::VersionedModels::new(
        SCORER_MODEL,
        store.clone(),
        suti_factory::artifacts::scorer_loader(device.clone()),
    )
    .latest()
    .await
    .map_err(|e| anyhow::anyhow!("loading the scorer: {e}"))?;
    Ok(StoredModels {
        base,
        apprentice: LoadedModel::from_bundle(apprentice_version, &apprentice)?,
        scorer,
        tower: Arc::new(suti_factory::towers::load_image_tower(
            &suti_factory::towers::image_tower_path(&config.models.image_tower),
            &device,
        )?),
        text: Arc::new(suti_factory::towers::configured_text_encoder(
            &config.models.text_encoder,
            &device,
        )?),
    })
}

/// The subject encoder and image–text scorer chosen, over the stored models.
pub fn encoders(
    subject: &SubjectEncoderChoice,
    scorer: &ScorerChoice,
    stored: &StoredModels,
) -> anyhow::Result<(SubjectEncoder, ImageTextScorer)> {
    // The reference encoders run where the image tower does.
    let device = stored.tower.device().clone();
    let subject = match subject {
        SubjectEncoderChoice::Tower => SubjectEncoder::Tower {
            tower: stored.tower.clone(),
            reading: TowerReading::CHOSEN,
        },
        SubjectEncoderChoice::Dinov2(dir) => SubjectEncoder::Dinov2(Box::new(
            Dinov2Encoder::load(dir, &device)
                .with_context(|| format!("loading DINOv2 from {}", dir.display()))?,
        )),
    };
    let image_text = match scorer {
        ScorerChoice::Trained => ImageTextScorer::Trained {
            scorer: stored.scorer.clone(),
            tower: stored.tower.clone(),
            text: stored.text.clone(),
        },
        ScorerChoice::Clip(dir) => ImageTextScorer::Clip(Box::new(
            ClipEncoder::load(dir, &device)
                .with_context(|| format!("loading CLIP from {}", dir.display()))?,
        )),
    };
    Ok((subject, image_text))
}

/// The experts' recipe of the configuration, with `steps` when given.
pub fn expert_settings(config: &SutiConfig, steps: Option<u64>) -> ExpertStageConfig {
    ExpertStageConfig {
        steps: steps.unwrap_or(config.expert.steps),
        ..config.expert.clone()
    }
}

/// The evaluation set: up to `subjects` subjects (0: all) with `prompts` prompts each, the
/// subject named with `identifier` in the experts' prompts. EmojiWorld's set is rendered into
/// `<out>/benchmark`.
pub fn evaluation_set(
    source: &EvalSetSource,
    subjects: usize,
    out: &Path,
    prompts: usize,
    identifier: &str,
) -> anyhow::Result<EvalSet> {
    let dir = match source {
        EvalSetSource::DreamBench(dir) => {
            return Ok(EvalSet {
                name: format!("DreamBench ({})", dir.display()),
                dir: dir.clone(),
                subjects: subjects_from_dreambench(
                    dir,
                    subjects,
                    prompts,
                    identifier,
                    suti_data::benchmark::DISTRACTORS_PER_SUBJECT,
                )?,
            });
        }
        EvalSetSource::Benchmark(dir) => dir.clone(),
        EvalSetSource::EmojiWorld { seed } => {
            let dir = out.join("benchmark");
            let assets =
                Assets::open_default().context("EmojiWorld assets (run scripts/fetch-assets)")?;
            write_benchmark(&assets, &dir, BENCHMARK_SIDE, *seed, subjects)?;
            dir
        }
    };
    Ok(EvalSet {
        name: "EmojiWorld held-out subjects".to_string(),
        subjects: subjects_from_benchmark(&dir, subjects, prompts, identifier)?,
        dir,
    })
}

/// The protocol's models: the stored ones with the chosen encoders and the centring mean.
pub fn eval_models(
    stored: StoredModels,
    subject: SubjectEncoder,
    scorer: ImageTextScorer,
    set: &EvalSet,
) -> anyhow::Result<EvalModels> {
    let side = stored.base.config.image_size as u32;
    let assets = Assets::open_default().ok();
    // EmojiWorld's mean comes from training renders; a DreamBench folder centres on its photos.
    let from_assets = assets
        .as_ref()
        .filter(|_| set.subjects.iter().all(|s| s.matched_contexts));
    let photos: Vec<suti_data::RgbaImage> =
        set.subjects.iter().flat_map(|s| s.demo_images()).collect();
    let centring = stored_centring(&subject, &set.dir, from_assets, side, &photos)?;
    Ok(EvalModels {
        base: stored.base,
        apprentice: stored.apprentice,
        subject,
        centring: Some(centring),
        scorer,
        text: stored.text,
    })
}
