//! Answering a request: the site's fixed resources, its pages, and the images rendered on demand.

use std::time::Duration;

use super::distractors::{banner, logo};
use super::hostile::{self, decompression_bomb};
use super::{DISALLOWED_PREFIX, Site};
use crate::prompts::Scene;
use crate::render::render_with_box;
use crate::rng::fnv1a64;

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
    /// A 200 with `body`.
    fn ok(content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: SiteBody::Bytes(body),
        }
    }

    /// The 404 page.
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

    /// A 302 to `to`.
    fn redirect(to: &str) -> Self {
        Self {
            status: 302,
            content_type: "text/html; charset=utf-8",
            headers: vec![("Location".into(), to.into())],
            body: SiteBody::Bytes(Vec::new()),
        }
    }
}

impl Site {
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

    /// The answers that depend on the generated pages, `None` where the path names nothing.
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
}
