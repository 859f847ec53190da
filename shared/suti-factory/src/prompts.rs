//! Prompts for an expert (DESIGN §2 step 3): the DreamBench templates with the cluster's subject,
//! keeping only contexts its images never showed — the generations must teach the apprentice
//! something the demonstrations do not already contain.

use suti_data::{Prompt, PromptKind, all_prompts};
use suti_rng::SplitMix64;

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

/// The template family's name as messages carry it.
pub fn family_name(kind: PromptKind) -> &'static str {
    match kind {
        PromptKind::Recontextualisation => "recontextualisation",
        PromptKind::Accessorisation => "accessorisation",
        PromptKind::Property => "property",
    }
}

/// A family from its name.
pub fn family_from_name(name: &str) -> Option<PromptKind> {
    [
        PromptKind::Recontextualisation,
        PromptKind::Accessorisation,
        PromptKind::Property,
    ]
    .into_iter()
    .find(|k| family_name(*k) == name)
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
        assert_eq!(
            family_from_name(family_name(PromptKind::Property)),
            Some(PromptKind::Property)
        );
    }
}
