//! Prompts for an expert (architecture.md §1 step 3): the DreamBench templates with the cluster's
//! subject, keeping only contexts its images never showed — the generations must teach the
//! apprentice something the demonstrations do not already contain.

use suti_data::{Prompt, PromptKind, all_prompts};
use suti_rng::SplitMix64;
use suti_runtime::TemplateFamily;

/// A prompt to render with an expert.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationPrompt {
    /// The DreamBench prompt it comes from.
    pub prompt: Prompt,
    /// The text the expert is given, with its identifier token (`a sks teapot on the beach`).
    pub expert_text: String,
    /// The text with the class noun alone (`a teapot on the beach`), what the apprentice sees.
    pub plain_text: String,
}

/// Byte range of the first case-insensitive occurrence of `word` in `text` that is not part of a
/// longer word ("cat" in "a cattle cat" is the second one).
pub fn whole_word(text: &str, word: &str) -> Option<std::ops::Range<usize>> {
    if word.is_empty() {
        return None;
    }
    let (lower, word) = (text.to_lowercase(), word.to_lowercase());
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let mut from = 0;
    while let Some(found) = lower[from..].find(&word) {
        let (at, end) = (from + found, from + found + word.len());
        if boundary(lower[..at].chars().next_back()) && boundary(lower[end..].chars().next()) {
            return Some(at..end);
        }
        from = end;
    }
    None
}

/// The template family's name as messages carry it.
pub fn family_name(kind: PromptKind) -> &'static str {
    match kind {
        PromptKind::Recontextualisation => "recontextualisation",
        PromptKind::Accessorisation => "accessorisation",
        PromptKind::Property => "property",
    }
}

/// The prompts of a configured template family.
pub fn prompt_kind(family: TemplateFamily) -> PromptKind {
    match family {
        TemplateFamily::Recontextualisation => PromptKind::Recontextualisation,
        TemplateFamily::Accessorisation => PromptKind::Accessorisation,
        TemplateFamily::Property => PromptKind::Property,
    }
}

/// Up to `count` prompts of the given families for a subject, in a deterministic order drawn from
/// `seed`, leaving out every recontextualisation whose place one of `captions` already names.
pub fn generation_prompts(
    noun: &str,
    identifier: &str,
    captions: &[String],
    families: &[PromptKind],
    count: usize,
    seed: u64,
) -> Vec<GenerationPrompt> {
    let captions: Vec<String> = captions.iter().map(|c| c.to_lowercase()).collect();
    let shown = |p: &Prompt| {
        p.kind == PromptKind::Recontextualisation
            && captions
                .iter()
                .any(|c| c.contains(&p.scene.phrase().to_lowercase()))
    };
    let mut pool: Vec<Prompt> = all_prompts()
        .into_iter()
        .filter(|p| families.contains(&p.kind) && !shown(p))
        .collect();
    let mut rng = SplitMix64::derive(seed, "generation-prompts");
    for k in (1..pool.len()).rev() {
        pool.swap(k, rng.below(k + 1));
    }
    pool.into_iter()
        .take(count)
        .map(|prompt| GenerationPrompt {
            expert_text: prompt.text(&format!("{identifier} {noun}")),
            plain_text: prompt.text(noun),
            prompt,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_avoid_the_places_the_cluster_showed() {
        let captions = vec![
            "our teapot on the beach last summer".to_string(),
            "my teapot in the snow".to_string(),
        ];
        let all = generation_prompts(
            "teapot",
            "sks",
            &captions,
            &[PromptKind::Recontextualisation],
            100,
            1,
        );
        assert_eq!(all.len(), 18, "20 places minus the two shown");
        assert!(all.iter().all(|p| !p.plain_text.contains("beach")));
        assert!(all.iter().all(|p| p.expert_text.contains("sks teapot")));
        let again = generation_prompts(
            "teapot",
            "sks",
            &captions,
            &[PromptKind::Recontextualisation],
            5,
            1,
        );
        assert_eq!(again[..], all[..5], "deterministic for a seed");
        let props = generation_prompts("teapot", "sks", &[], &[PromptKind::Property], 100, 1);
        assert_eq!(props.len(), 5);
        // A family's name on the wire is its name in the configuration.
        for family in [
            TemplateFamily::Recontextualisation,
            TemplateFamily::Accessorisation,
            TemplateFamily::Property,
        ] {
            let configured = serde_json::to_value(family).unwrap();
            assert_eq!(configured, family_name(prompt_kind(family)));
        }
    }
}
