//! The evaluation's subjects: EmojiWorld's held-out set (written by `suti synthweb benchmark` or
//! by the evaluation itself), with each subject's distractors rendered in its own scenes, or the
//! real DreamBench folder, whose distractors are the other subjects' photos.

use std::path::Path;

use suti_data::RgbaImage;
use suti_data::benchmark::BenchmarkManifest;
use suti_data::dreambench::{fill_template, load_dreambench, read_photo};
use suti_data::{DecodeLimits, PromptKind};
use suti_factory::render::Demonstration;

use crate::{EvalError, Result};

/// At most `limit` items (0: all).
fn at_most(limit: usize) -> usize {
    if limit == 0 { usize::MAX } else { limit }
}

/// One prompt of an evaluation subject.
#[derive(Debug, Clone)]
pub struct EvalPrompt {
    /// With the class noun alone (`a teapot in the snow`): what base and apprentice are given.
    pub plain: String,
    /// With the expert's identifier (`a sks teapot in the snow`).
    pub personalised: String,
    /// The true image, where the set has one (EmojiWorld does, DreamBench does not).
    pub truth: Option<RgbaImage>,
    /// Its id in the set (`snow`).
    pub id: String,
    /// The render seed of the true image (EmojiWorld).
    pub seed: u64,
}

/// Another subject's photos, for the matched-context margin and identification.
#[derive(Debug, Clone)]
pub struct Distractor {
    /// Its id.
    pub id: String,
    /// Whether it is the other drawing of the evaluation subject's class.
    pub same_class: bool,
    /// Its photos (EmojiWorld: in the evaluation subject's scenes, from its seeds).
    pub demos: Vec<RgbaImage>,
}

/// One evaluation subject.
#[derive(Debug, Clone)]
pub struct EvalSubject {
    /// Its id.
    pub id: String,
    /// Class noun.
    pub noun: String,
    /// Its photos with captions.
    pub demos: Vec<Demonstration>,
    /// What to render.
    pub prompts: Vec<EvalPrompt>,
    /// The subjects it must be told apart from, the other drawing of its class first (if any).
    pub distractors: Vec<Distractor>,
    /// Whether distractors were rendered in this subject's own scenes (EmojiWorld), so that
    /// backgrounds cancel in the margin.
    pub matched_contexts: bool,
}

impl EvalSubject {
    /// The demonstration images.
    pub fn demo_images(&self) -> Vec<RgbaImage> {
        self.demos.iter().map(|d| d.image.clone()).collect()
    }

    /// Index of the other drawing of the class among the distractors.
    pub fn other_drawing(&self) -> Option<usize> {
        self.distractors.iter().position(|d| d.same_class)
    }
}

/// Reads an image relative to `dir`.
fn read(dir: &Path, rel: &str) -> Result<RgbaImage> {
    let path = dir.join(rel);
    let bytes = std::fs::read(&path).map_err(|e| EvalError::Io(path.clone(), e))?;
    RgbaImage::from_png(&bytes).map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))
}

/// The subjects of a set written by `suti synthweb benchmark`, `prompts` of each: the first
/// recontextualisation and accessorisation prompts whose place no demonstration shows (property
/// prompts ask for a different-looking subject, which subject metrics would punish).
pub fn subjects_from_benchmark(
    dir: &Path,
    limit: usize,
    prompts: usize,
    identifier: &str,
) -> Result<Vec<EvalSubject>> {
    let manifest =
        BenchmarkManifest::load(dir).map_err(|e| EvalError::Io(dir.join("manifest.json"), e))?;
    let mut subjects = Vec::new();
    for entry in manifest.subjects.iter().take(at_most(limit)) {
        let demos = entry
            .demos
            .iter()
            .map(|d| {
                Ok(Demonstration {
                    image: read(dir, &d.image)?,
                    caption: d.caption.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let captions: Vec<String> = demos.iter().map(|d| d.caption.to_lowercase()).collect();
        let mut chosen = Vec::new();
        for p in &entry.prompts {
            if chosen.len() == prompts {
                break;
            }
            if p.kind == PromptKind::Property || shown_by(&p.text, &entry.noun, &captions) {
                continue;
            }
            chosen.push(EvalPrompt {
                plain: p.text.clone(),
                personalised: p
                    .template
                    .replace("{}", &format!("{identifier} {}", entry.noun)),
                truth: Some(read(dir, &p.true_image)?),
                id: p.id.clone(),
                seed: p.seed,
            });
        }
        let distractors = entry
            .distractors
            .iter()
            .map(|d| {
                Ok(Distractor {
                    id: d.id.clone(),
                    same_class: entry.other_drawing.as_deref() == Some(d.id.as_str()),
                    demos: d
                        .demos
                        .iter()
                        .map(|p| read(dir, p))
                        .collect::<Result<Vec<_>>>()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        subjects.push(EvalSubject {
            id: entry.id.clone(),
            noun: entry.noun.clone(),
            demos,
            prompts: chosen,
            matched_contexts: !distractors.is_empty(),
            distractors,
        });
    }
    Ok(subjects)
}

/// Whether a prompt's context (what follows the noun) is already what a demonstration shows.
fn shown_by(prompt: &str, noun: &str, captions: &[String]) -> bool {
    let lower = prompt.to_lowercase();
    let tail = lower
        .split_once(&noun.to_lowercase())
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_default();
    !tail.is_empty() && captions.iter().any(|c| c.contains(&tail))
}

/// The subjects of the real DreamBench folder, photos decoded and `prompts` of each. Each
/// subject's distractors are the other subjects' photos (those of the same class noun marked as
/// such): real photos cannot be re-shot in another subject's scenes, so the margin there does not
/// cancel backgrounds.
pub fn subjects_from_dreambench(
    dir: &Path,
    limit: usize,
    prompts: usize,
    identifier: &str,
    distractors: usize,
) -> Result<Vec<EvalSubject>> {
    let set = load_dreambench(dir).map_err(|e| EvalError::Invalid(e.to_string()))?;
    let limits = DecodeLimits {
        max_side: 8192,
        max_pixels: 8192 * 8192,
        max_bytes: 256 << 20,
    };
    let mut photos: Vec<Vec<RgbaImage>> = Vec::new();
    for subject in &set.subjects {
        // Photos are reduced at once: the models work at a few dozen pixels.
        photos.push(
            subject
                .photos
                .iter()
                .map(|p| {
                    read_photo(p, limits)
                        .map(|img| img.centre_square(128))
                        .map_err(|e| EvalError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?,
        );
    }
    let n = set.subjects.len();
    let mut subjects = Vec::new();
    for (i, subject) in set.subjects.iter().enumerate().take(at_most(limit)) {
        let templates = if subject.live {
            &set.live_prompts
        } else {
            &set.object_prompts
        };
        let others: Vec<Distractor> = (1..n)
            .map(|k| (i + k) % n)
            .take(distractors)
            .map(|j| Distractor {
                id: set.subjects[j].id.clone(),
                same_class: set.subjects[j].class_noun == subject.class_noun,
                demos: photos[j].clone(),
            })
            .collect();
        subjects.push(EvalSubject {
            id: subject.id.clone(),
            noun: subject.class_noun.clone(),
            demos: photos[i]
                .iter()
                .map(|image| Demonstration {
                    image: image.clone(),
                    caption: format!("a photo of my {}", subject.class_noun),
                })
                .collect(),
            prompts: templates
                .iter()
                .take(prompts)
                .enumerate()
                .map(|(k, t)| EvalPrompt {
                    plain: fill_template(t, None, &subject.class_noun),
                    personalised: fill_template(t, Some(identifier), &subject.class_noun),
                    truth: None,
                    id: format!("prompt-{k}"),
                    seed: 0,
                })
                .collect(),
            distractors: others,
            matched_contexts: false,
        });
    }
    Ok(subjects)
}
