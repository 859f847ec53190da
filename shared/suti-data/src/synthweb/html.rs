//! The site's HTML and XML: the sitemap, the index pages and the subject pages.

use std::fmt::Write as _;

use super::hostile;
use super::{DISALLOWED_PREFIX, Site, SubjectPage};
use crate::rng::fnv1a64;

/// `text` safe inside an HTML attribute or element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Site {
    /// `sitemap.xml`, with absolute URLs under `base`.
    pub(super) fn sitemap(&self, base: &str) -> String {
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

    /// Index page `n`.
    pub(super) fn index(&self, n: usize) -> String {
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

    /// The page about one subject.
    pub(super) fn subject_html(&self, page: &SubjectPage) -> String {
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
