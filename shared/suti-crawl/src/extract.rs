//! Extraction from an HTML page: its title, every image with its alt text and the caption of the
//! figure around it, and every link — all resolved against the page URL. Links and images with a
//! non-http(s) scheme (`data:`, `javascript:`) are dropped here; the address policy decides the rest.

use scraper::{ElementRef, Html, Selector};
use url::Url;

/// One image reference on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageImage {
    /// Absolute image URL.
    pub url: Url,
    /// `alt` text (empty if none).
    pub alt: String,
    /// Caption of the enclosing `<figure>` (empty if none).
    pub caption: String,
}

/// What a page holds for the crawler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The `<title>` (empty if none).
    pub title: String,
    /// Images in document order.
    pub images: Vec<PageImage>,
    /// Links in document order, de-duplicated, fragments removed.
    pub links: Vec<Url>,
}

fn text_of(el: ElementRef<'_>) -> String {
    el.text()
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn resolve(base: &Url, href: &str) -> Option<Url> {
    let mut url = base.join(href.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_fragment(None);
    Some(url)
}

/// Parses `html` served at `base`.
pub fn extract(base: &Url, html: &str) -> Page {
    let doc = Html::parse_document(html);
    let sel = |s: &str| Selector::parse(s).expect("static selector");
    let title = doc
        .select(&sel("title"))
        .next()
        .map(text_of)
        .unwrap_or_default();
    let caption_sel = sel("figcaption");
    let images = doc
        .select(&sel("img[src]"))
        .filter_map(|img| {
            let url = resolve(base, img.value().attr("src")?)?;
            let alt = img.value().attr("alt").unwrap_or("").trim().to_string();
            let caption = img
                .ancestors()
                .filter_map(ElementRef::wrap)
                .find(|a| a.value().name() == "figure")
                .and_then(|figure| figure.select(&caption_sel).next())
                .map(text_of)
                .unwrap_or_default();
            Some(PageImage { url, alt, caption })
        })
        .collect();
    let mut links: Vec<Url> = Vec::new();
    for a in doc.select(&sel("a[href]")) {
        if let Some(url) = a.value().attr("href").and_then(|h| resolve(base, h))
            && !links.contains(&url)
        {
            links.push(url);
        }
    }
    Page {
        title,
        images,
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_captions_titles_and_links_are_extracted_and_resolved() {
        let base = Url::parse("http://127.0.0.1:8088/s/teapot-noto.html").unwrap();
        let html = r#"<!doctype html><html><head><title> Our  teapot </title></head><body>
            <header><img src="/img/logo.png" alt="logo"></header>
            <figure><img src="../img/teapot-noto/0.png" alt="a teapot on the beach">
              <figcaption>our <b>teapot</b> on the beach last summer</figcaption></figure>
            <img src="data:image/png;base64,AAAA" alt="inline">
            <a href="/s/dog-noto.html#top">dog</a> <a href="/s/dog-noto.html">again</a>
            <a href="javascript:alert(1)">x</a> <a href="mailto:a@b.c">mail</a>
            <a href="https://example.org/page">away</a>
        </body></html>"#;
        let page = extract(&base, html);
        assert_eq!(page.title, "Our teapot");
        assert_eq!(page.images.len(), 2);
        assert_eq!(
            page.images[0].url.as_str(),
            "http://127.0.0.1:8088/img/logo.png"
        );
        assert_eq!(page.images[0].caption, "");
        assert_eq!(
            page.images[1].url.as_str(),
            "http://127.0.0.1:8088/img/teapot-noto/0.png"
        );
        assert_eq!(page.images[1].alt, "a teapot on the beach");
        assert_eq!(
            page.images[1].caption,
            "our teapot on the beach last summer"
        );
        let links: Vec<&str> = page.links.iter().map(Url::as_str).collect();
        assert_eq!(
            links,
            vec![
                "http://127.0.0.1:8088/s/dog-noto.html",
                "https://example.org/page"
            ]
        );
    }

    #[test]
    fn malformed_html_never_panics() {
        let base = Url::parse("http://h/").unwrap();
        for html in [
            "",
            "<",
            "<img src=",
            "<figure><figcaption>",
            "<a href='::::'>x</a>",
            "\u{0}\u{fffd}<<<>>>",
        ] {
            let _ = extract(&base, html);
        }
    }
}
