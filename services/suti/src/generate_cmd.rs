//! `suti generate`: the apprentice on the command line — demonstrations and a prompt in, PNGs and
//! a contact sheet (demonstrations | generations) out, from a model folder on disk (a release's
//! `config.json` + `model.safetensors`, or a trainer checkpoint's `state.safetensors` +
//! `meta.json`) or the latest release in the configured storage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::Device;
use clap::Args;
use suti_data::{DecodeLimits, RgbaImage};
use suti_factory::BaseModel;
use suti_factory::bundle::{CONFIG_FILE, WEIGHTS_FILE};
use suti_factory::render::{DEFAULT_CAPTION, Demonstration, Generation, LoadedModel, render_batch};

/// Options of `suti generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A model folder: a release (config.json + model.safetensors) or an apprentice-trainer
    /// checkpoint (state.safetensors + meta.json). Default: the latest release in storage.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A YAML file layered over the compiled-in defaults (storage, text encoder).
    #[arg(long, short, env = "SUTI_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to render.
    #[arg(long)]
    pub prompt: String,
    /// A demonstration image (PNG); repeat for more (up to 8).
    #[arg(long = "demo")]
    pub demos: Vec<PathBuf>,
    /// A caption for the demonstration in the same position; repeat.
    #[arg(long = "caption")]
    pub captions: Vec<String>,
    /// Images to render.
    #[arg(long, default_value_t = 4)]
    pub num_images: usize,
    /// Denoising steps.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Guidance weight (the paper serves with 15).
    #[arg(long, default_value_t = 15.0)]
    pub guidance: f32,
    /// Seed of the first image; the others follow it.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the PNGs and the contact sheet.
    #[arg(long, default_value = "generated")]
    pub out: PathBuf,
}

/// The model in a folder: a release bundle, or a trainer checkpoint (whose notes hold the shape).
fn load_folder(dir: &Path, device: &Device) -> anyhow::Result<(String, BaseModel)> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "local".into());
    if dir.join(WEIGHTS_FILE).exists() {
        let config = std::fs::read(dir.join(CONFIG_FILE)).context("reading config.json")?;
        let weights = std::fs::read(dir.join(WEIGHTS_FILE)).context("reading model.safetensors")?;
        return Ok((name, BaseModel::from_bytes(&config, &weights, device)?));
    }
    if dir.join("state.safetensors").exists() {
        let meta: suti_models::train::CheckpointMeta =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)?;
        let shape = meta
            .notes
            .get("model")
            .context("the checkpoint does not record its model shape")?;
        let state = candle_core::safetensors::load(dir.join("state.safetensors"), device)?;
        let tensors: HashMap<_, _> = state
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix("param.").map(|n| (n.to_string(), t)))
            .collect();
        let config = serde_json::from_str(shape)?;
        let bundle = BaseModel { config, tensors };
        bundle
            .dit()
            .context("the checkpoint does not fit its recorded shape")?;
        return Ok((format!("{name} (step {})", meta.step), bundle));
    }
    bail!(
        "{} holds neither a release (config.json, model.safetensors) nor a checkpoint \
         (state.safetensors, meta.json)",
        dir.display()
    )
}

/// Renders and writes the images and the contact sheet.
pub async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let config = suti_runtime::SutiConfig::load_file(args.config.as_deref())?;
    let device = suti_factory::device::model_device(config.models.device)?;
    if args.demos.len() > 8 {
        bail!("at most 8 demonstrations");
    }
    if args.num_images == 0 || args.steps == 0 {
        bail!("--num-images and --steps must be at least 1");
    }
    let (version, bundle) = match &args.model {
        Some(dir) => load_folder(dir, &device)?,
        None => {
            let store = suti_runtime::connect_storage(&config).await?;
            let releases = suti_stage::VersionedModels::new(
                "apprentice",
                store,
                suti_factory::artifacts::dit_loader("apprentice", device.clone()),
            );
            let (version, bundle) = releases
                .latest()
                .await
                .map_err(|e| anyhow::anyhow!("the latest release: {e}"))?;
            (version, (*bundle).clone())
        }
    };
    let model = LoadedModel::from_bundle(version.clone(), &bundle)?;
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)?;
    let limits = DecodeLimits::default();
    let demonstrations = args
        .demos
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let image = RgbaImage::from_png_with_limits(&bytes, limits)
                .with_context(|| format!("decoding {}", path.display()))?;
            let caption = args
                .captions
                .get(i)
                .cloned()
                .unwrap_or_else(|| DEFAULT_CAPTION.to_string());
            Ok(Demonstration { image, caption })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = Generation {
        prompt: args.prompt.clone(),
        demonstrations: demonstrations.clone(),
        seeds: (0..args.num_images as u64)
            .map(|k| args.seed.wrapping_add(k))
            .collect(),
        steps: args.steps,
        guidance: args.guidance,
        demo_guidance: None,
    };
    let started = std::time::Instant::now();
    let images = tokio::task::block_in_place(|| render_batch(&model, &text, &[&request]))?
        .pop()
        .unwrap_or_default();
    std::fs::create_dir_all(&args.out)?;
    for (k, image) in images.iter().enumerate() {
        std::fs::write(args.out.join(format!("{k}.png")), image.to_png())?;
    }
    let side = model.image_size() as u32;
    let demo_row: Vec<RgbaImage> = demonstrations
        .iter()
        .map(|d| d.image.centre_square(side))
        .collect();
    let sheet = suti_data::contact::contact_sheet(&[demo_row, images.clone()], 2);
    std::fs::write(args.out.join("contact-sheet.png"), sheet.to_png())?;
    println!(
        "{} images from {version} in {:.1} s → {} (contact sheet: demonstrations above, generations below)",
        images.len(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
