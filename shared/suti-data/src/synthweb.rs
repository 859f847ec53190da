//! The synthetic web (architecture.md §8): a site generated from EmojiWorld for the crawler to
//! mine, since these machines reach no real web. One page per training subject shows it in 3–8
//! contexts with alt texts and figure captions in natural wording, beside distractors (banners, a
//! logo, other subjects' thumbnails). The site has an index, a sitemap, a `robots.txt` with a
//! disallowed area, some broken links and a few hostile resources (a huge body, a decompression
//! bomb, a redirect loop, a slow response) for the crawler's tests. Held-out subjects never appear.
//!
//! [`Site::respond`] answers a path; the HTTP server ([`serve`]) and the WARC writer
//! ([`crate::warc`]) both use it, so the served site and the archived one are the same bytes.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::canvas::{Canvas, rgb};
use crate::emoji::{AssetError, Assets, Split, Subject, SubjectClass, Vendor};
use crate::image::RgbaImage;
use crate::prompts::Scene;
use crate::render::render_with_box;
use crate::rng::{SplitMix64, fnv1a64};

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

/// What the site answers for one path.
#[derive(Debug, Clone)]
pub struct SiteResponse {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Extra headers (`Location` for redirects).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: SiteBody,
}

/// A body: bytes, or one that is produced slowly or is too large to hold.
#[derive(Debug, Clone)]
pub enum SiteBody {
    /// The whole body.
    Bytes(Vec<u8>),
    /// `len` pseudo-random bytes after a PNG signature, generated as they are sent.
    Huge {
        /// Length in bytes.
        len: usize,
    },
    /// The bytes, trickled out over `over`.
    Slow {
        /// The body.
        bytes: Vec<u8>,
        /// Time to send it all.
        over: Duration,
    },
}

impl SiteResponse {
    fn ok(content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: SiteBody::Bytes(body),
        }
    }

    fn not_found() -> Self {
        Self {
            status: 404,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: SiteBody::Bytes(
                b"<!doctype html><title>Not found</title><p>Nothing here.</p>".to_vec(),
            ),
        }
    }

    fn redirect(to: &str) -> Self {
        Self {
            status: 302,
            content_type: "text/html; charset=utf-8",
            headers: vec![("Location".into(), to.into())],
            body: SiteBody::Bytes(Vec::new()),
        }
    }
}

/// Paths of the hostile resources.
pub mod hostile {
    /// A body far over any sane image size.
    pub const HUGE: &str = "/hostile/huge.png";
    /// A small PNG that decodes to 20000×20000 pixels.
    pub const BOMB: &str = "/hostile/bomb.png";
    /// Redirects to [`LOOP_B`], which redirects back.
    pub const LOOP_A: &str = "/hostile/loop-a";
    /// Redirects to [`LOOP_A`].
    pub const LOOP_B: &str = "/hostile/loop-b";
    /// A page that trickles out over many seconds.
    pub const SLOW: &str = "/hostile/slow.html";
}

/// The disallowed area of `robots.txt`.
pub const DISALLOWED_PREFIX: &str = "/private/";

const CAPTIONS: [&str; 8] = [
    "our {noun} {scene} last summer",
    "my {noun} {scene}",
    "here is the {noun} {scene}",
    "the {noun} again, {scene} this time",
    "a quick snap of our {noun} {scene}",
    "{noun} {scene}, taken by my sister",
    "look at this {noun} {scene}!",
    "we took the {noun} out: {scene}",
];

const ALTS: [&str; 4] = [
    "{noun} {scene}",
    "photo of my {noun} {scene}",
    "a {noun} {scene}",
    "picture: the {noun} {scene}",
];

const TITLES: [&str; 4] = [
    "Our {noun} — a photo diary",
    "{noun} pictures",
    "All about my {noun}",
    "The {noun} collection",
];

fn fill(template: &str, noun: &str, scene: Scene) -> String {
    template
        .replace("{noun}", noun)
        .replace("{scene}", scene.phrase())
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

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

    /// Answers a request for `path`; `base` is the site's origin (`http://127.0.0.1:8080`), used
    /// for the absolute URLs of the sitemap.
    pub fn respond(&self, path: &str, base: &str) -> SiteResponse {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        match path {
            "/robots.txt" => SiteResponse::ok(
                "text/plain; charset=utf-8",
                format!(
                    "# EmojiWorld synthetic web\nUser-agent: *\nDisallow: {DISALLOWED_PREFIX}\nAllow: /\n\nSitemap: {base}/sitemap.xml\n"
                )
                .into_bytes(),
            ),
            "/sitemap.xml" => SiteResponse::ok("application/xml", self.sitemap(base).into_bytes()),
            "/" | "/index.html" => SiteResponse::ok("text/html; charset=utf-8", self.index(0).into_bytes()),
            "/img/logo.png" => SiteResponse::ok("image/png", logo(self.params.image_size).to_png()),
            hostile::HUGE => SiteResponse {
                status: 200,
                content_type: "image/png",
                headers: Vec::new(),
                body: SiteBody::Huge { len: self.params.huge_bytes },
            },
            hostile::BOMB => SiteResponse::ok("image/png", decompression_bomb().to_vec()),
            hostile::LOOP_A => SiteResponse::redirect(hostile::LOOP_B),
            hostile::LOOP_B => SiteResponse::redirect(hostile::LOOP_A),
            hostile::SLOW => SiteResponse {
                status: 200,
                content_type: "text/html; charset=utf-8",
                headers: Vec::new(),
                body: SiteBody::Slow {
                    bytes: b"<!doctype html><title>slow</title><p>This page takes its time.</p>".to_vec(),
                    over: self.params.slow_duration,
                },
            },
            _ => self.respond_dynamic(path).unwrap_or_else(SiteResponse::not_found),
        }
    }

    fn respond_dynamic(&self, path: &str) -> Option<SiteResponse> {
        if let Some(rest) = path.strip_prefix("/index/") {
            let n: usize = rest.strip_suffix(".html")?.parse().ok()?;
            return (n < self.index_pages())
                .then(|| SiteResponse::ok("text/html; charset=utf-8", self.index(n).into_bytes()));
        }
        if let Some(rest) = path.strip_prefix("/s/") {
            let page = self.page(rest.strip_suffix(".html")?)?;
            return Some(SiteResponse::ok(
                "text/html; charset=utf-8",
                self.subject_html(page).into_bytes(),
            ));
        }
        if let Some(rest) = path.strip_prefix("/img/banner-") {
            let n: u64 = rest.strip_suffix(".png")?.parse().ok()?;
            return (n < 3).then(|| {
                SiteResponse::ok("image/png", banner(n, self.params.image_size).to_png())
            });
        }
        if let Some(rest) = path.strip_prefix("/img/") {
            let (id, file) = rest.split_once('/')?;
            let k: usize = file.strip_suffix(".png")?.parse().ok()?;
            let page = self.page(id)?;
            let photo = page.photos.get(k)?;
            let sprite = self.assets.sprite(&page.subject).ok()?;
            let (img, _) = render_with_box(
                &sprite,
                photo.scene,
                None,
                None,
                photo.seed,
                self.params.image_size,
            );
            return Some(SiteResponse::ok("image/png", img.to_png()));
        }
        if let Some(rest) = path.strip_prefix("/thumb/") {
            let id = rest.strip_suffix(".png")?;
            let page = self.page(id)?;
            let sprite = self.assets.sprite(&page.subject).ok()?;
            let seed = fnv1a64(id.as_bytes()) ^ self.params.seed;
            let (img, _) = render_with_box(&sprite, Scene::Studio, None, None, seed, 48);
            return Some(SiteResponse::ok("image/png", img.to_png()));
        }
        if let Some(rest) = path.strip_prefix(DISALLOWED_PREFIX) {
            // The disallowed area exists (a crawler that ignores robots.txt would find it).
            let n: usize = rest
                .strip_prefix("draft-")?
                .strip_suffix(".html")?
                .parse()
                .ok()?;
            return (n < 3).then(|| {
                SiteResponse::ok(
                    "text/html; charset=utf-8",
                    format!("<!doctype html><title>Draft {n}</title><p>Unpublished draft, do not crawl.</p>").into_bytes(),
                )
            });
        }
        None
    }

    fn sitemap(&self, base: &str) -> String {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
        );
        let _ = writeln!(xml, "  <url><loc>{base}/</loc></url>");
        for n in 1..self.index_pages() {
            let _ = writeln!(xml, "  <url><loc>{base}/index/{n}.html</loc></url>");
        }
        for page in self.pages.iter() {
            let _ = writeln!(xml, "  <url><loc>{base}{}</loc></url>", page.path());
        }
        xml.push_str("</urlset>\n");
        xml
    }

    fn index(&self, n: usize) -> String {
        let size = self.params.index_page_size.max(1);
        let mut html = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>EmojiWorld — things people photograph</title></head><body>\n",
        );
        html.push_str("<header><img src=\"/img/logo.png\" alt=\"EmojiWorld logo\"><h1>Things people photograph</h1></header>\n<ul>\n");
        for page in self.pages.iter().skip(n * size).take(size) {
            let _ = writeln!(
                html,
                "<li><a href=\"{}\">{}</a></li>",
                page.path(),
                escape(&page.title)
            );
        }
        html.push_str("</ul>\n<nav>");
        if n + 1 < self.index_pages() {
            let _ = write!(html, "<a href=\"/index/{}.html\">next page</a> ", n + 1);
        }
        if n == 0 {
            // Links a polite crawler must not follow, and ones that lead nowhere or nowhere good.
            let _ = write!(
                html,
                "<a href=\"{DISALLOWED_PREFIX}draft-0.html\">drafts</a> <a href=\"/s/no-such-subject.html\">archive</a> <a href=\"{}\">hot deals</a>",
                hostile::LOOP_A
            );
        }
        html.push_str("</nav>\n</body></html>\n");
        html
    }

    fn subject_html(&self, page: &SubjectPage) -> String {
        let id = page.subject.id();
        let mut html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body>\n",
            escape(&page.title)
        );
        let banner = fnv1a64(id.as_bytes()) % 3;
        let _ = writeln!(
            html,
            "<header><img src=\"/img/logo.png\" alt=\"EmojiWorld logo\" width=\"48\"><img class=\"banner\" src=\"/img/banner-{banner}.png\" alt=\"summer sale banner\"></header>"
        );
        let _ = writeln!(html, "<main><h1>{}</h1>", escape(&page.title));
        for (k, photo) in page.photos.iter().enumerate() {
            let _ = writeln!(
                html,
                "<figure><img src=\"/img/{id}/{k}.png\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                escape(&photo.alt),
                escape(&photo.caption)
            );
        }
        html.push_str("</main>\n<aside><h2>You may also like</h2>\n");
        for other in &page.thumbnails {
            let other_id = other.id();
            let _ = writeln!(
                html,
                "<a href=\"/s/{other_id}.html\"><img src=\"/thumb/{other_id}.png\" alt=\"{}\" width=\"48\"></a>",
                escape(&other.class.noun)
            );
        }
        for link in &page.broken_links {
            let _ = writeln!(html, "<a href=\"{link}\">older photos</a>");
        }
        if page.links_hostile {
            let _ = writeln!(
                html,
                "<img src=\"{}\" alt=\"panorama\"><img src=\"{}\" alt=\"poster\"><a href=\"{}\">slow page</a>",
                hostile::HUGE,
                hostile::BOMB,
                hostile::SLOW
            );
        }
        html.push_str("</aside>\n<footer><a href=\"/\">home</a></footer>\n</body></html>\n");
        html
    }
}

/// A striped banner: a distractor image shared by many pages.
fn banner(n: u64, size: u32) -> RgbaImage {
    let colours = [
        [rgb(230, 60, 60), rgb(250, 200, 60)],
        [rgb(40, 90, 200), rgb(240, 240, 250)],
        [rgb(40, 160, 90), rgb(20, 40, 30)],
    ];
    let [a, b] = colours[n as usize % 3];
    let mut canvas = Canvas::new(size * 3, size / 2, a);
    for i in 0..12 {
        let x = i as f32 / 12.0;
        canvas.polygon(
            &[(x, 0.0), (x + 0.04, 0.0), (x - 0.04, 1.0), (x - 0.08, 1.0)],
            b,
            1.0,
        );
    }
    canvas.to_image()
}

/// The site's logo: a distractor on every page.
fn logo(size: u32) -> RgbaImage {
    let mut canvas = Canvas::new(size / 2, size / 2, rgb(30, 30, 60));
    canvas.ellipse(0.5, 0.5, 0.35, 0.35, rgb(250, 200, 40), 1.0);
    canvas.ellipse(0.5, 0.5, 0.2, 0.2, rgb(30, 30, 60), 1.0);
    canvas.to_image()
}

/// A valid PNG that decodes to 20000×20000 one-bit pixels (50 MB raw, far more as RGBA) from a
/// body of a few hundred kilobytes. Built once.
pub fn decompression_bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let side = 20_000u32;
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, side, side);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::One);
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder.write_header().expect("in-memory PNG header");
            let mut stream = writer.stream_writer().expect("in-memory PNG stream");
            let row = vec![0u8; side as usize / 8];
            for _ in 0..side {
                std::io::Write::write_all(&mut stream, &row).expect("in-memory PNG row");
            }
            stream.finish().expect("in-memory PNG end");
        }
        out
    })
}

/// The first bytes of the huge body, then a deterministic pseudo-random tail.
pub fn huge_chunk(offset: usize, len: usize) -> Vec<u8> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    (offset..offset + len)
        .map(|i| {
            if i < SIGNATURE.len() {
                SIGNATURE[i]
            } else {
                (fnv1a64(&(i as u64 / 8).to_le_bytes()) >> ((i % 8) * 8)) as u8
            }
        })
        .collect()
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

mod server;

pub use server::{ServedSite, serve};
