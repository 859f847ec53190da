//! What the web page offers before the user has photos of their own: example subjects (held-out
//! EmojiWorld subjects, rendered from the assets when serving starts, never stored) and prompt
//! suggestions from the DreamBench prompt set.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use suti_data::emoji::{Assets, Split, SubjectKind};
use suti_data::prompts::{Scene, prompts_for};
use suti_data::render::render_with_box;
use suti_rng::SplitMix64;

/// Side of the rendered example demonstrations, pixels (the evaluation set's size).
const EXAMPLE_SIDE: u32 = 64;
/// Demonstrations per example subject.
const EXAMPLE_DEMOS: usize = 3;

/// One demonstration of an example.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleDemonstration {
    /// The PNG, base64.
    pub png_base64: String,
    /// Its caption.
    pub caption: String,
}

/// An example subject: its demonstrations and the DreamBench prompts for its kind.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleSubject {
    /// The subject's id (`teapot-noto`).
    pub id: String,
    /// Its class noun (`teapot`).
    pub noun: String,
    /// Demonstrations rendered in different places.
    pub demonstrations: Vec<ExampleDemonstration>,
    /// Prompts for it, filled in with its noun.
    pub prompts: Vec<String>,
}

/// Everything `/v1/examples` answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Examples {
    /// Example subjects (empty when off or when the assets are missing).
    pub subjects: Vec<ExampleSubject>,
    /// DreamBench prompt templates for an object, `{}` standing for the subject.
    pub prompt_templates: Vec<String>,
}

impl Examples {
    /// No example subjects, only the prompt templates.
    pub fn templates_only() -> Self {
        Self {
            subjects: Vec::new(),
            prompt_templates: prompts_for(SubjectKind::Object)
                .iter()
                .map(|p| p.template.to_string())
                .collect(),
        }
    }

    /// `count` held-out subjects rendered from `assets` (a class's two drawings are different
    /// subjects; each class is offered once).
    pub fn render(assets: &Assets, count: usize) -> Result<Self, suti_data::emoji::AssetError> {
        let mut examples = Self::templates_only();
        let mut classes = std::collections::HashSet::new();
        for subject in assets.catalog().subjects(Split::HeldOut) {
            if examples.subjects.len() >= count {
                break;
            }
            if !classes.insert(subject.class.short_name.clone()) {
                continue;
            }
            let sprite = assets.sprite(&subject)?;
            let id = subject.id();
            let noun = subject.class.noun.clone();
            let mut rng = SplitMix64::derive(0, &format!("serving-example/{id}"));
            let demonstrations = Scene::RECONTEXTUALISATION
                .iter()
                .step_by(Scene::RECONTEXTUALISATION.len() / EXAMPLE_DEMOS)
                .take(EXAMPLE_DEMOS)
                .map(|&scene| {
                    let (image, _) =
                        render_with_box(&sprite, scene, None, None, rng.next_u64(), EXAMPLE_SIDE);
                    ExampleDemonstration {
                        png_base64: BASE64.encode(image.to_png()),
                        caption: format!("a photo of my {noun} {}", scene.phrase()),
                    }
                })
                .collect();
            examples.subjects.push(ExampleSubject {
                prompts: prompts_for(subject.class.kind)
                    .iter()
                    .map(|p| with_article(&p.text(&noun)))
                    .collect(),
                id,
                noun,
                demonstrations,
            });
        }
        Ok(examples)
    }

    /// The examples `serving` is configured for: `count` subjects from the default EmojiWorld
    /// assets, or only the templates when `count` is 0 or the assets cannot be read (logged).
    pub fn configured(count: usize) -> Self {
        if count == 0 {
            return Self::templates_only();
        }
        match Assets::open_default().and_then(|assets| Self::render(&assets, count)) {
            Ok(examples) => examples,
            Err(e) => {
                tracing::warn!(error = %e, "the web page has no example subjects: the EmojiWorld assets cannot be read");
                Self::templates_only()
            }
        }
    }
}

/// `a` before a vowel sound made `an` (`a abacus` → `an abacus`): the prompt set's templates
/// start with `a {}` for any noun.
fn with_article(prompt: &str) -> String {
    match prompt.strip_prefix("a ") {
        Some(rest) if rest.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {rest}"),
        _ => prompt.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_read_as_english() {
        assert_eq!(
            with_article("a abacus in the snow"),
            "an abacus in the snow"
        );
        assert_eq!(with_article("a teapot in the snow"), "a teapot in the snow");
        assert_eq!(with_article("a shiny umbrella"), "a shiny umbrella");
    }
}
