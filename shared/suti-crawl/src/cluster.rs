//! Clustering (architecture.md §8): images are grouped by where they were found (the page by
//! default, or its directory or host), near duplicates are dropped, members far from the group's
//! medoid in the image tower's feature space are dropped (banners, logos, other subjects'
//! thumbnails), groups outside the size bounds are discarded, and the subject noun is read off the
//! captions. Cluster ids are deterministic, so a redelivered request rewrites the same clusters.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::phash::distance;

pub use suti_runtime::ClusterGrouping;

/// The group key of a page URL under `grouping`: its page, its directory (`/blog/2024/` for
/// `/blog/2024/post.html`) or its host.
pub fn group_key(grouping: ClusterGrouping, page: &Url) -> String {
    let origin = page.origin().ascii_serialization();
    match grouping {
        ClusterGrouping::Page => format!("{origin}{}", page.path()),
        ClusterGrouping::Directory => {
            let path = page.path();
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{origin}{dir}")
        }
        ClusterGrouping::Host => origin,
    }
}

/// Thresholds of clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterParams {
    /// Fewest members a cluster keeps.
    pub min_members: usize,
    /// Most members a cluster keeps (the closest to the medoid).
    pub max_members: usize,
    /// Smallest cosine similarity to the medoid a member may have.
    pub min_similarity: f32,
    /// Perceptual-hash distance at or below which two images are near duplicates.
    pub near_duplicate_bits: u32,
}

impl Default for ClusterParams {
    fn default() -> Self {
        Self {
            min_members: 3,
            max_members: 10,
            min_similarity: 0.6,
            near_duplicate_bits: 4,
        }
    }
}

/// One candidate image of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Content hash (identity).
    pub sha256: String,
    /// Perceptual hash.
    pub phash: u64,
    /// Unit-length image tower features.
    pub features: Vec<f32>,
    /// Caption (figure caption, else alt text).
    pub caption: String,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Why a group produced no cluster; the label is the `reason` of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRejection {
    /// Fewer than the minimum members after filtering.
    TooFewMembers,
    /// No subject noun could be read from the captions.
    NoNoun,
}

impl GroupRejection {
    /// Low-cardinality label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooFewMembers => "too_few_members",
            Self::NoNoun => "no_noun",
        }
    }
}

/// A cluster: indices into the group's candidates, and the subject noun.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Deterministic id.
    pub id: String,
    /// Kept members, closest to the medoid first.
    pub members: Vec<usize>,
    /// Subject noun.
    pub noun: String,
}

/// Clusters one group of candidates.
pub fn cluster_group(
    group_key: &str,
    candidates: &[Candidate],
    params: &ClusterParams,
) -> Result<Cluster, GroupRejection> {
    // Exact and near duplicates: keep the first of each.
    let mut kept: Vec<usize> = Vec::new();
    let mut seen = HashSet::new();
    for (i, c) in candidates.iter().enumerate() {
        if !seen.insert(c.sha256.as_str()) {
            continue;
        }
        if kept
            .iter()
            .any(|&k| distance(candidates[k].phash, c.phash) <= params.near_duplicate_bits)
        {
            continue;
        }
        kept.push(i);
    }
    if kept.len() < params.min_members {
        return Err(GroupRejection::TooFewMembers);
    }
    // The subject noun is the term most captions share; members whose caption does not name it
    // (a logo's "site logo", a thumbnail of another subject) are not photos of the subject.
    let captions: Vec<&str> = kept
        .iter()
        .map(|&i| candidates[i].caption.as_str())
        .collect();
    let noun = subject_noun(&captions, params.min_members).ok_or(GroupRejection::NoNoun)?;
    kept.retain(|&i| names(&candidates[i].caption, &noun));
    // The medoid: the member most similar to all the others.
    let medoid = *kept
        .iter()
        .max_by(|&&a, &&b| {
            let score = |i: usize| -> f32 {
                kept.iter()
                    .map(|&j| cosine(&candidates[i].features, &candidates[j].features))
                    .sum()
            };
            score(a).total_cmp(&score(b))
        })
        .ok_or(GroupRejection::TooFewMembers)?;
    let mut members: Vec<(usize, f32)> = kept
        .iter()
        .map(|&i| {
            (
                i,
                cosine(&candidates[i].features, &candidates[medoid].features),
            )
        })
        .filter(|(_, s)| *s >= params.min_similarity)
        .collect();
    members.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    members.truncate(params.max_members);
    if members.len() < params.min_members {
        return Err(GroupRejection::TooFewMembers);
    }
    let members: Vec<usize> = members.into_iter().map(|(i, _)| i).collect();
    let mut shas: Vec<&str> = members
        .iter()
        .map(|&i| candidates[i].sha256.as_str())
        .collect();
    shas.sort_unstable();
    let id = cluster_id(group_key, &shas);
    Ok(Cluster { id, members, noun })
}

/// A deterministic id: FNV-1a-64 of the group key and the sorted member hashes, as hex.
pub fn cluster_id(group_key: &str, sorted_shas: &[&str]) -> String {
    let mut text = group_key.to_string();
    for sha in sorted_shas {
        text.push('\n');
        text.push_str(sha);
    }
    format!("{:016x}", suti_data::rng::fnv1a64(text.as_bytes()))
}

/// Words that never name a subject.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "our", "my", "his", "her", "their", "your", "this", "that", "these", "those",
    "of", "on", "in", "at", "by", "with", "and", "or", "to", "from", "for", "again", "time",
    "last", "summer", "winter", "year", "photo", "picture", "pictures", "snap", "quick", "here",
    "is", "are", "was", "look", "taken", "sister", "brother", "we", "took", "out", "it", "its",
    "front", "behind", "among", "under", "near", "next", "one", "day", "new", "old",
];

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect()
}

/// Whether `caption` names `noun` (as whole words).
fn names(caption: &str, noun: &str) -> bool {
    let ws = words(caption);
    let parts: Vec<&str> = noun.split(' ').collect();
    ws.windows(parts.len())
        .any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
}

/// The subject noun: the (one- or two-word) term found in the most captions — the class noun
/// recurs while the contexts vary. None when no term appears in at least `min_count` captions.
pub fn subject_noun(captions: &[&str], min_count: usize) -> Option<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = 0;
    for caption in captions {
        let ws = words(caption);
        let mut terms: HashSet<String> = HashSet::new();
        for (i, w) in ws.iter().enumerate() {
            if STOPWORDS.contains(&w.as_str()) {
                continue;
            }
            terms.insert(w.clone());
            if let Some(next) = ws.get(i + 1)
                && !STOPWORDS.contains(&next.as_str())
            {
                terms.insert(format!("{w} {next}"));
            }
        }
        for term in terms {
            *counts.entry(term.clone()).or_default() += 1;
            first_seen.entry(term).or_insert_with(|| {
                order += 1;
                order
            });
        }
    }
    let best = counts.values().copied().max()?;
    if best < min_count.max(1) {
        return None;
    }
    // Among the most frequent terms prefer two words (a bigram that recurs as often as its parts
    // is a compound noun: "hot dog"), then the one seen first.
    counts
        .into_iter()
        .filter(|(_, n)| *n == best)
        .map(|(t, _)| t)
        .min_by_key(|t| {
            (
                usize::from(!t.contains(' ')),
                first_seen.get(t).copied().unwrap_or(0),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(sha: &str, phash: u64, features: &[f32], caption: &str) -> Candidate {
        let norm = features.iter().map(|v| v * v).sum::<f32>().sqrt();
        Candidate {
            sha256: sha.into(),
            phash,
            features: features.iter().map(|v| v / norm).collect(),
            caption: caption.into(),
        }
    }

    #[test]
    fn groups_by_page_directory_or_host() {
        let url = Url::parse("http://h:8088/blog/2024/post.html?x=1").unwrap();
        assert_eq!(
            group_key(ClusterGrouping::Page, &url),
            "http://h:8088/blog/2024/post.html"
        );
        assert_eq!(
            group_key(ClusterGrouping::Directory, &url),
            "http://h:8088/blog/2024/"
        );
        assert_eq!(group_key(ClusterGrouping::Host, &url), "http://h:8088");
    }

    #[test]
    fn distractors_and_duplicates_are_dropped_and_the_noun_read_from_captions() {
        let candidates = vec![
            candidate(
                "a",
                0x0000_0000,
                &[1.0, 0.1, 0.0],
                "our teapot on the beach last summer",
            ),
            candidate("b", 0xffff_0000, &[0.9, 0.2, 0.1], "my teapot in the snow"),
            candidate("logo", 0x00ff_00ff, &[0.0, 0.0, 1.0], "site logo"),
            candidate(
                "c",
                0x0f0f_0f0f,
                &[1.0, 0.0, 0.1],
                "here is the teapot on the wooden floor",
            ),
            candidate(
                "a",
                0x0000_0000,
                &[1.0, 0.1, 0.0],
                "our teapot on the beach last summer",
            ),
            candidate(
                "c-resized",
                0x0f0f_0f0e,
                &[1.0, 0.0, 0.1],
                "the teapot again",
            ),
            candidate("thumb", 0xf0f0_f0f0, &[0.1, 1.0, 0.0], "dog"),
            candidate(
                "d",
                0x3333_3333,
                &[0.95, 0.15, 0.05],
                "a quick snap of our teapot in the jungle",
            ),
        ];
        let cluster = cluster_group(
            "http://h/s/teapot.html",
            &candidates,
            &ClusterParams::default(),
        )
        .unwrap();
        let shas: Vec<&str> = cluster
            .members
            .iter()
            .map(|&i| candidates[i].sha256.as_str())
            .collect();
        let mut sorted = shas.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            vec!["a", "b", "c", "d"],
            "logo, thumbnail and duplicates dropped"
        );
        assert_eq!(cluster.noun, "teapot");
        let again = cluster_group(
            "http://h/s/teapot.html",
            &candidates,
            &ClusterParams::default(),
        )
        .unwrap();
        assert_eq!(again.id, cluster.id, "ids are deterministic");
        let elsewhere = cluster_group(
            "http://h/s/other.html",
            &candidates,
            &ClusterParams::default(),
        )
        .unwrap();
        assert_ne!(elsewhere.id, cluster.id);
    }

    #[test]
    fn small_groups_are_rejected() {
        let candidates = vec![
            candidate("a", 1, &[1.0, 0.0], "teapot"),
            candidate("b", 0xffff_ffff, &[0.0, -1.0], "banner"),
            candidate("c", 0xff00_ff00, &[0.7, 0.7], "teapot"),
        ];
        // Only two captions name a subject: not enough for a cluster of three.
        let err = cluster_group("k", &candidates, &ClusterParams::default()).unwrap_err();
        assert_eq!(err.reason(), "no_noun");
        let lenient = ClusterParams {
            min_members: 2,
            ..ClusterParams::default()
        };
        let cluster = cluster_group("k", &candidates, &lenient).unwrap();
        assert_eq!(cluster.members.len(), 2);
    }

    #[test]
    fn nouns_come_from_recurring_terms() {
        assert_eq!(
            subject_noun(
                &[
                    "our hot dog on the beach",
                    "the hot dog in the snow",
                    "my hot dog, taken by my sister"
                ],
                3
            )
            .as_deref(),
            Some("hot dog")
        );
        assert_eq!(
            subject_noun(
                &[
                    "picture: the rickshaw on the dirt road",
                    "rickshaw in the snow"
                ],
                2
            )
            .as_deref(),
            Some("rickshaw")
        );
        assert_eq!(subject_noun(&["sunset", "beach party", "grandma"], 2), None);
        assert!(names("our hot dog on the beach", "hot dog"));
        assert!(!names("a hotdog stand", "hot dog"));
    }
}
