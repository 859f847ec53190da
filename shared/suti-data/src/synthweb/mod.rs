//! The synthetic web (architecture.md §8): a site generated from EmojiWorld for the crawler to
//! mine, since these machines reach no real web. One page per training subject shows it in 3–8
//! contexts with alt texts and figure captions in natural wording, beside distractors (banners, a
//! logo, other subjects' thumbnails). The site has an index, a sitemap, a `robots.txt` with a
//! disallowed area, some broken links and a few hostile resources (a huge body, a decompression
//! bomb, a redirect loop, a slow response) for the crawler's tests. Held-out subjects never appear.
//!
//! [`Site::respond`] answers a path; the HTTP server ([`serve`]) and the WARC writer
//! ([`crate::warc`]) both use it, so the served site and the archived one are the same bytes.

use std::sync::Arc;
use std::time::Duration;

use crate::emoji::{AssetError, Assets, Split, Subject, SubjectClass, Vendor};
use crate::prompts::Scene;
use crate::rng::SplitMix64;

mod distractors;
pub mod hostile;
mod html;
mod respond;
mod server;
mod wording;

pub use hostile::{decompression_bomb, huge_chunk};
pub use respond::{SiteBody, SiteResponse};
pub use server::{ServedSite, serve};

use wording::{ALTS, CAPTIONS, TITLES, capitalise, fill};

/// The shape of a generated site.
#[derive(Debug, Clone)]
pub struct SiteParams {
    /// Subject pages (0 for every training subject).
    pub subjects: usize,
    /// Seed of everything random about the site.
    pub seed: u64,
    /// Side of the subject photos in pixels (the crawler normalises them to the model resolution).
    pub image_size: u32,
    /// Fewest subject photos on a page.
    pub min_images: usize,
    /// Most subject photos on a page.
    pub max_images: usize,
    /// Draw whole classes: both vendors' drawings of each class get a page, so a class noun
    /// never tells the two instances apart (DreamBench's situation); otherwise subjects are drawn
    /// one by one.
    pub both_vendors: bool,
    /// Subject pages listed per index page.
    pub index_page_size: usize,
    /// Size of the huge hostile body, bytes.
    pub huge_bytes: usize,
    /// How long the slow hostile response takes to finish.
    pub slow_duration: Duration,
}

impl Default for SiteParams {
    fn default() -> Self {
        Self {
            subjects: 0,
            seed: 1,
            image_size: 96,
            min_images: 3,
            max_images: 8,
            both_vendors: false,
            index_page_size: 40,
            huge_bytes: 64 << 20,
            slow_duration: Duration::from_secs(30),
        }
    }
}

/// One photo on a subject page.
#[derive(Debug, Clone)]
pub struct PagePhoto {
    /// The scene it shows.
    pub scene: Scene,
    /// Render seed.
    pub seed: u64,
    /// `alt` text.
    pub alt: String,
    /// Figure caption.
    pub caption: String,
}

/// A page about one subject.
#[derive(Debug, Clone)]
pub struct SubjectPage {
    /// The subject.
    pub subject: Subject,
    /// Page title.
    pub title: String,
    /// The photos of the subject.
    pub photos: Vec<PagePhoto>,
    /// Other subjects shown as small thumbnails (distractors).
    pub thumbnails: Vec<Subject>,
    /// Whether the page links the hostile resources.
    pub links_hostile: bool,
    /// Links to pages that do not exist.
    pub broken_links: Vec<String>,
}

impl SubjectPage {
    /// The page's path.
    pub fn path(&self) -> String {
        format!("/s/{}.html", self.subject.id())
    }
}

/// The disallowed area of `robots.txt`.
pub const DISALLOWED_PREFIX: &str = "/private/";

/// A generated site.
#[derive(Debug, Clone)]
pub struct Site {
    assets: Assets,
    params: SiteParams,
    pages: Arc<Vec<SubjectPage>>,
}

impl Site {
    /// Generates the site from the training subjects.
    pub fn new(assets: Assets, params: SiteParams) -> Self {
        let mut subjects = assets.catalog().subjects(Split::Train);
        let mut rng = SplitMix64::derive(params.seed, "site");
        // A seeded shuffle, then the first N: a size parameter that still mixes categories.
        for i in (1..subjects.len()).rev() {
            subjects.swap(i, rng.below(i + 1));
        }
        if params.both_vendors {
            // Each class at its first place in the shuffled order, with both its drawings.
            let mut classes: Vec<Arc<SubjectClass>> = Vec::new();
            for subject in &subjects {
                if !classes.iter().any(|c| Arc::ptr_eq(c, &subject.class)) {
                    classes.push(subject.class.clone());
                }
            }
            subjects = classes
                .into_iter()
                .flat_map(|class| {
                    Vendor::ALL.into_iter().map(move |vendor| Subject {
                        class: class.clone(),
                        vendor,
                    })
                })
                .collect();
        }
        if params.subjects > 0 {
            subjects.truncate(params.subjects);
        }
        subjects.sort_by_key(Subject::id);
        let all = subjects.clone();
        let pages = subjects
            .into_iter()
            .enumerate()
            .map(|(i, subject)| {
                let mut rng = SplitMix64::derive(params.seed, &subject.id());
                let span = params.max_images.saturating_sub(params.min_images) + 1;
                let count = params.min_images + rng.below(span);
                let mut scenes = Scene::RECONTEXTUALISATION.to_vec();
                for k in (1..scenes.len()).rev() {
                    scenes.swap(k, rng.below(k + 1));
                }
                let noun = subject.class.noun.clone();
                let photos = scenes
                    .into_iter()
                    .take(count)
                    .map(|scene| PagePhoto {
                        scene,
                        seed: rng.next_u64(),
                        alt: fill(ALTS[rng.below(ALTS.len())], &noun, scene),
                        caption: fill(CAPTIONS[rng.below(CAPTIONS.len())], &noun, scene),
                    })
                    .collect();
                let thumbnails = (0..rng.below(3) + 1)
                    .map(|_| all[rng.below(all.len())].clone())
                    .filter(|s| s.id() != subject.id())
                    .collect();
                let title = capitalise(&TITLES[rng.below(TITLES.len())].replace("{noun}", &noun));
                let links_hostile = i % 7 == 3;
                let broken_links = if i % 5 == 1 {
                    vec![format!("/s/{}-old.html", subject.id())]
                } else {
                    Vec::new()
                };
                SubjectPage {
                    subject,
                    title,
                    photos,
                    thumbnails,
                    links_hostile,
                    broken_links,
                }
            })
            .collect();
        Self {
            assets,
            params,
            pages: Arc::new(pages),
        }
    }

    /// The subject pages.
    pub fn pages(&self) -> &[SubjectPage] {
        &self.pages
    }

    /// The parameters the site was generated with.
    pub fn params(&self) -> &SiteParams {
        &self.params
    }

    fn page(&self, id: &str) -> Option<&SubjectPage> {
        self.pages.iter().find(|p| p.subject.id() == id)
    }

    fn index_pages(&self) -> usize {
        self.pages
            .len()
            .div_ceil(self.params.index_page_size.max(1))
            .max(1)
    }

    /// Every path a crawler following links (and the sitemap) can reach, except the disallowed
    /// area and the hostile resources.
    pub fn public_paths(&self) -> Vec<String> {
        let mut paths = vec!["/robots.txt".to_string(), "/sitemap.xml".into(), "/".into()];
        paths.push("/img/logo.png".into());
        paths.extend((0..3).map(|n| format!("/img/banner-{n}.png")));
        for n in 1..self.index_pages() {
            paths.push(format!("/index/{n}.html"));
        }
        for page in self.pages.iter() {
            paths.push(page.path());
            let id = page.subject.id();
            paths.extend((0..page.photos.len()).map(|k| format!("/img/{id}/{k}.png")));
            paths.push(format!("/thumb/{id}.png"));
        }
        paths.sort();
        paths.dedup();
        paths
    }
}

/// Why the site could not start.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The artwork is missing.
    #[error(transparent)]
    Assets(#[from] AssetError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}
