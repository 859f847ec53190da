//! The natural wording of the subject pages: titles, alt texts and figure captions, filled from
//! templates with the subject's noun and the scene's phrase.

use crate::prompts::Scene;

/// Figure captions, as people write them under their photos.
pub(super) const CAPTIONS: [&str; 8] = [
    "our {noun} {scene} last summer",
    "my {noun} {scene}",
    "here is the {noun} {scene}",
    "the {noun} again, {scene} this time",
    "a quick snap of our {noun} {scene}",
    "{noun} {scene}, taken by my sister",
    "look at this {noun} {scene}!",
    "we took the {noun} out: {scene}",
];

/// `alt` texts: shorter and plainer than the captions.
pub(super) const ALTS: [&str; 4] = [
    "{noun} {scene}",
    "photo of my {noun} {scene}",
    "a {noun} {scene}",
    "picture: the {noun} {scene}",
];

/// Page titles (capitalised when filled).
pub(super) const TITLES: [&str; 4] = [
    "Our {noun} — a photo diary",
    "{noun} pictures",
    "All about my {noun}",
    "The {noun} collection",
];

/// `template` with the noun and the scene's phrase in place.
pub(super) fn fill(template: &str, noun: &str, scene: Scene) -> String {
    template
        .replace("{noun}", noun)
        .replace("{scene}", scene.phrase())
}

/// `text` with its first letter upper-case.
pub(super) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
