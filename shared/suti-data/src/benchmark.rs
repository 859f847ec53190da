//! The DreamBench-style evaluation set over EmojiWorld's held-out subjects (architecture.md §9):
//! per subject, 5 captioned demonstration photos and its 25 prompts, each with the true image the
//! renderer draws for it, and the demonstrations of its distractors (the other drawing of its class
//! and subjects of other classes) rendered with the subject's own scenes and seeds, so that a
//! metric comparing them sees only the subject change. Written as a folder with `manifest.json`,
//! which `suti eval` reads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::emoji::{AssetError, Assets, Category, Split, Subject, SubjectKind, Vendor};
use crate::prompts::{PromptKind, Scene, prompts_for};
use crate::render::{render, render_with_box};
use crate::rng::SplitMix64;

/// Demonstrations per subject: DreamBench has 4–6 photos per subject, and five let the
/// evaluation compare the apprentice with 1, 3 and 5 of them.
pub const DEMOS_PER_SUBJECT: usize = 5;

/// Distractor subjects per evaluation subject: the other drawing of its class and six subjects of
/// other classes, so identification chooses among 8 candidates (chance 1/8).
pub const DISTRACTORS_PER_SUBJECT: usize = 7;

/// One demonstration photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoEntry {
    /// Image path relative to the manifest.
    pub image: String,
    /// Its caption.
    pub caption: String,
    /// The scene it shows (absent in sets written before scenes were recorded).
    #[serde(default)]
    pub scene: Option<Scene>,
    /// The render seed (scene layout and pose).
    #[serde(default)]
    pub seed: u64,
}

/// Another subject's demonstrations rendered with an evaluation subject's scenes and seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistractorEntry {
    /// The distractor's subject id.
    pub id: String,
    /// Its class noun.
    pub noun: String,
    /// Image paths relative to the manifest, one per demonstration of the evaluation subject.
    pub demos: Vec<String>,
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
    /// The render seed of the true image.
    #[serde(default)]
    pub seed: u64,
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
    /// The other vendor's drawing of the same class (its id).
    #[serde(default)]
    pub other_drawing: Option<String>,
    /// Distractors, the other drawing first, each rendered with this subject's scenes and seeds.
    #[serde(default)]
    pub distractors: Vec<DistractorEntry>,
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

/// The distractors of `subject` among `all` (class-major, both drawings of each class adjacent,
/// as [`crate::Catalog::subjects`] lists them): the other drawing of its class, then one drawing
/// of each of the next classes in the list, wrapping around, alternating vendors.
pub fn distractors_of(all: &[Subject], subject: &Subject) -> Vec<Subject> {
    let mut out: Vec<Subject> = all
        .iter()
        .filter(|s| s.class == subject.class && s.vendor != subject.vendor)
        .cloned()
        .collect();
    let mut classes: Vec<&Subject> = Vec::new();
    for s in all {
        if classes.last().is_none_or(|c| c.class != s.class) {
            classes.push(s);
        }
    }
    let Some(at) = classes.iter().position(|c| c.class == subject.class) else {
        return out;
    };
    for offset in 1..classes.len() {
        if out.len() >= DISTRACTORS_PER_SUBJECT {
            break;
        }
        let class = &classes[(at + offset) % classes.len()].class;
        let vendor = Vendor::ALL[offset % Vendor::ALL.len()];
        let pick = all
            .iter()
            .find(|s| &s.class == class && s.vendor == vendor)
            .or_else(|| all.iter().find(|s| &s.class == class));
        if let Some(pick) = pick {
            out.push(pick.clone());
        }
    }
    out
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
    let all = assets.catalog().subjects(Split::HeldOut);
    let mut subjects = all.clone();
    if limit > 0 {
        subjects.truncate(limit);
    }
    let mut entries = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let distractors = distractors_of(&all, &subject);
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
            let seed = rng.next_u64();
            let (img, _) = render_with_box(&sprite, scene, None, None, seed, resolution);
            let image = format!("{id}/demo-{k}.png");
            write(&dir.join(&image), &img.to_png())?;
            demos.push(DemoEntry {
                image,
                caption: format!("a photo of my {noun} {}", scene.phrase()),
                scene: Some(scene),
                seed,
            });
        }
        let mut distractor_entries = Vec::with_capacity(distractors.len());
        for other in &distractors {
            let other_sprite = assets.sprite(other)?;
            let other_id = other.id();
            let mut images = Vec::with_capacity(demos.len());
            for (k, demo) in demos.iter().enumerate() {
                let scene = demo.scene.expect("recorded above");
                let (img, _) =
                    render_with_box(&other_sprite, scene, None, None, demo.seed, resolution);
                let image = format!("{id}/distractors/{other_id}/demo-{k}.png");
                write(&dir.join(&image), &img.to_png())?;
                images.push(image);
            }
            distractor_entries.push(DistractorEntry {
                id: other_id,
                noun: other.class.noun.clone(),
                demos: images,
            });
        }
        let mut prompts = Vec::new();
        for prompt in prompts_for(subject.class.kind) {
            let seed = rng.next_u64();
            let img = render(&sprite, &prompt, seed, resolution);
            let true_image = format!("{id}/{}.png", prompt.id);
            write(&dir.join(&true_image), &img.to_png())?;
            prompts.push(PromptEntry {
                id: prompt.id.to_string(),
                kind: prompt.kind,
                template: prompt.template.to_string(),
                text: prompt.text(&noun),
                true_image,
                seed,
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
            other_drawing: distractors
                .first()
                .filter(|d| d.class == subject.class)
                .map(|d| d.id()),
            distractors: distractor_entries,
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
