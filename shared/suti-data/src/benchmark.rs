//! The DreamBench-style evaluation set over EmojiWorld's held-out subjects (DESIGN §9): per
//! subject, 5 captioned demonstration photos and its 25 prompts, each with the true image the
//! renderer draws for it. Written as a folder with `manifest.json`, which `suti eval` reads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::emoji::{AssetError, Assets, Category, Split, SubjectKind, Vendor};
use crate::prompts::{PromptKind, Scene, prompts_for};
use crate::render::{render, render_with_box};
use crate::rng::SplitMix64;

/// Demonstrations per subject: DreamBench has 4–6 photos per subject, and five let the
/// evaluation compare the apprentice with 1, 3 and 5 of them.
pub const DEMOS_PER_SUBJECT: usize = 5;

/// One demonstration photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoEntry {
    /// Image path relative to the manifest.
    pub image: String,
    /// Its caption.
    pub caption: String,
}

/// One prompt with its true image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptEntry {
    /// Prompt id (`jungle`).
    pub id: String,
    /// Recontextualisation, accessorisation or property.
    pub kind: PromptKind,
    /// Template with `{}` for the subject phrase.
    pub template: String,
    /// The prompt with the class noun filled in.
    pub text: String,
    /// True image path relative to the manifest.
    pub true_image: String,
}

/// One held-out subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectEntry {
    /// Subject id (`teapot-noto`).
    pub id: String,
    /// Class noun.
    pub noun: String,
    /// Live or object.
    pub kind: SubjectKind,
    /// Category.
    pub category: Category,
    /// Who drew it.
    pub vendor: Vendor,
    /// The demonstrations.
    pub demos: Vec<DemoEntry>,
    /// The 25 prompts.
    pub prompts: Vec<PromptEntry>,
}

/// The evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkManifest {
    /// Name of the set.
    pub name: String,
    /// Image side in pixels.
    pub resolution: u32,
    /// Seed it was rendered with.
    pub seed: u64,
    /// The subjects.
    pub subjects: Vec<SubjectEntry>,
}

impl BenchmarkManifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(dir.join("manifest.json"))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Why the set could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BenchmarkError {
    /// Artwork missing or unreadable.
    #[error(transparent)]
    Assets(#[from] AssetError),
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Writes the held-out evaluation set (`limit` subjects, 0 for all) into `dir` at `resolution`.
pub fn write_benchmark(
    assets: &Assets,
    dir: &Path,
    resolution: u32,
    seed: u64,
    limit: usize,
) -> Result<BenchmarkManifest, BenchmarkError> {
    let write = |path: &Path, bytes: &[u8]| -> Result<(), BenchmarkError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| BenchmarkError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(path, bytes).map_err(|source| BenchmarkError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut subjects = assets.catalog().subjects(Split::HeldOut);
    if limit > 0 {
        subjects.truncate(limit);
    }
    let mut entries = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let id = subject.id();
        let sprite = assets.sprite(&subject)?;
        let mut rng = SplitMix64::derive(seed, &format!("benchmark/{id}"));
        let noun = subject.class.noun.clone();
        let mut scenes = Scene::RECONTEXTUALISATION.to_vec();
        for k in (1..scenes.len()).rev() {
            scenes.swap(k, rng.below(k + 1));
        }
        let mut demos = Vec::new();
        for (k, scene) in scenes.into_iter().take(DEMOS_PER_SUBJECT).enumerate() {
            let (img, _) = render_with_box(&sprite, scene, None, None, rng.next_u64(), resolution);
            let image = format!("{id}/demo-{k}.png");
            write(&dir.join(&image), &img.to_png())?;
            demos.push(DemoEntry {
                image,
                caption: format!("a photo of my {noun} {}", scene.phrase()),
            });
        }
        let mut prompts = Vec::new();
        for prompt in prompts_for(subject.class.kind) {
            let img = render(&sprite, &prompt, rng.next_u64(), resolution);
            let true_image = format!("{id}/{}.png", prompt.id);
            write(&dir.join(&true_image), &img.to_png())?;
            prompts.push(PromptEntry {
                id: prompt.id.to_string(),
                kind: prompt.kind,
                template: prompt.template.to_string(),
                text: prompt.text(&noun),
                true_image,
            });
        }
        entries.push(SubjectEntry {
            id,
            noun,
            kind: subject.class.kind,
            category: subject.class.category,
            vendor: subject.vendor,
            demos,
            prompts,
        });
    }
    let manifest = BenchmarkManifest {
        name: "emojiworld-held-out".into(),
        resolution,
        seed,
        subjects: entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    write(&dir.join("manifest.json"), &json)?;
    Ok(manifest)
}
