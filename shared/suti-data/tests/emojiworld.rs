//! EmojiWorld on the real artwork (fetched by `scripts/fetch-assets`): the catalog and its split,
//! the renderer over every subject and prompt, the served synthetic web as a polite crawler sees
//! it, and the WARC file as an independent reader (Python's warcio) sees it.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use scraper::{Html, Selector};
use suti_data::emoji::Category;
use suti_data::image::{DecodeLimits, ImageError};
use suti_data::synthweb::{DISALLOWED_PREFIX, Site, SiteParams, hostile, serve};
use suti_data::{Assets, RgbaImage, Split, all_prompts, prompts_for, render};
use suti_testkit::{http_get, http_get_bytes};

fn assets() -> Assets {
    Assets::open_default().expect("EmojiWorld assets (scripts/test fetches them)")
}

#[test]
fn the_catalog_covers_every_category_and_the_split_is_fixed_and_disjoint() {
    let assets = assets();
    let classes = assets.catalog().classes();
    for category in [
        Category::Animal,
        Category::Plant,
        Category::Food,
        Category::Vehicle,
        Category::Object,
    ] {
        let n = classes.iter().filter(|c| c.category == category).count();
        assert!(n >= 10, "{category:?}: only {n} classes");
    }
    let by_split = |split: Split| -> BTreeSet<String> {
        classes
            .iter()
            .filter(|c| c.split == split)
            .map(|c| c.unified.clone())
            .collect()
    };
    let (train, validation, held_out) = (
        by_split(Split::Train),
        by_split(Split::Validation),
        by_split(Split::HeldOut),
    );
    assert!(train.is_disjoint(&validation) && train.is_disjoint(&held_out));
    assert!(validation.is_disjoint(&held_out));
    assert_eq!(
        train.len() + validation.len() + held_out.len(),
        classes.len()
    );
    // Pinned: a change to the catalog filter or the split function shows up here.
    assert_eq!(
        (train.len(), validation.len(), held_out.len()),
        (447, 60, 52)
    );
    // Both vendors of a class are on the same side.
    for subject in assets.catalog().subjects(Split::HeldOut) {
        assert_eq!(subject.class.split, Split::HeldOut);
        assert!(held_out.contains(&subject.class.unified));
    }
    assert!(
        classes
            .iter()
            .all(|c| !c.noun.is_empty() && c.noun == c.noun.to_lowercase())
    );
}

#[test]
fn every_prompt_renders_for_every_subject() {
    let assets = assets();
    let mut rendered = 0;
    for split in [Split::Train, Split::Validation, Split::HeldOut] {
        for subject in assets.catalog().subjects(split) {
            let sprite = assets.sprite(&subject).unwrap();
            let prompts = prompts_for(subject.class.kind);
            assert_eq!(prompts.len(), 25);
            for (i, prompt) in prompts.iter().enumerate() {
                let img = render(&sprite, prompt, i as u64, 32);
                assert_eq!(
                    (img.width, img.height, img.pixels.len()),
                    (32, 32, 32 * 32 * 4)
                );
                rendered += 1;
            }
        }
    }
    assert!(rendered > 20_000, "{rendered}");
    // And every distinct prompt at 64 pixels for one live subject and one object.
    let dog = assets.catalog().subject("dog-noto").unwrap();
    let teapot = assets.catalog().subject("teapot-twemoji").unwrap();
    for subject in [dog, teapot] {
        let sprite = assets.sprite(&subject).unwrap();
        for prompt in all_prompts() {
            assert_eq!(render(&sprite, &prompt, 5, 64).width, 64);
        }
    }
}

#[test]
fn rendering_real_artwork_is_deterministic() {
    let a = assets();
    let b = Assets::open_default().unwrap();
    let subject = a.catalog().subjects(Split::Train)[17].clone();
    for prompt in prompts_for(subject.class.kind) {
        let first = render(&a.sprite(&subject).unwrap(), &prompt, 42, 64).to_png();
        let second = render(&b.sprite(&subject).unwrap(), &prompt, 42, 64).to_png();
        assert_eq!(first, second, "{}", prompt.id);
    }
}

fn links(html: &Html) -> Vec<String> {
    let a = Selector::parse("a[href]").unwrap();
    html.select(&a)
        .filter_map(|e| e.value().attr("href"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_site_parses_and_a_polite_crawler_stays_out_of_the_disallowed_area() {
    let params = SiteParams {
        subjects: 30,
        huge_bytes: 1 << 20,
        slow_duration: Duration::from_millis(500),
        ..SiteParams::default()
    };
    let site = Site::new(assets(), params);
    let expected: BTreeSet<String> = site.pages().iter().map(|p| p.path()).collect();
    let held_out: HashSet<String> = assets()
        .catalog()
        .subjects(Split::HeldOut)
        .iter()
        .map(|s| s.id())
        .collect();
    assert!(
        site.pages()
            .iter()
            .all(|p| !held_out.contains(&p.subject.id()))
    );
    let served = serve(site.clone(), "127.0.0.1:0").await.unwrap();
    let addr = served.addr;

    let (status, robots_txt) = http_get(addr, "/robots.txt").await.unwrap();
    assert_eq!(status, 200);
    let robot = texting_robots::Robot::new("suti-test", robots_txt.as_bytes()).unwrap();
    assert!(!robot.allowed("/private/draft-0.html"));
    assert!(robot.allowed(&expected.iter().next().unwrap().clone()));
    assert_eq!(
        robot.sitemaps,
        vec![format!("{}/sitemap.xml", served.base_url())]
    );

    // A polite breadth-first crawl over links, asking robots.txt before every fetch.
    let figure = Selector::parse("figure").unwrap();
    let img = Selector::parse("img").unwrap();
    let caption = Selector::parse("figcaption").unwrap();
    let title = Selector::parse("title").unwrap();
    let mut queue = VecDeque::from(["/".to_string()]);
    let mut seen: HashSet<String> = queue.iter().cloned().collect();
    let mut subject_pages = BTreeSet::new();
    let mut statuses = Vec::new();
    while let Some(path) = queue.pop_front() {
        if !robot.allowed(&path) {
            continue;
        }
        let (status, body) = http_get(addr, &path).await.unwrap();
        statuses.push(status);
        if status != 200 {
            continue;
        }
        let html = Html::parse_document(&body);
        assert!(html.select(&title).next().is_some(), "{path} has no title");
        if let Some(id) = path
            .strip_prefix("/s/")
            .and_then(|p| p.strip_suffix(".html"))
        {
            subject_pages.insert(path.clone());
            let page = site.pages().iter().find(|p| p.subject.id() == id).unwrap();
            let figures: Vec<_> = html.select(&figure).collect();
            assert!(
                (3..=8).contains(&figures.len()),
                "{path}: {} figures",
                figures.len()
            );
            for f in figures {
                let alt = f.select(&img).next().unwrap().value().attr("alt").unwrap();
                let text: String = f.select(&caption).next().unwrap().text().collect();
                assert!(alt.contains(&page.subject.class.noun), "{alt}");
                assert!(text.contains(&page.subject.class.noun), "{text}");
            }
        }
        for link in links(&html) {
            if link.starts_with('/') && seen.insert(link.clone()) {
                queue.push_back(link);
            }
        }
    }
    assert_eq!(
        subject_pages, expected,
        "every subject page is reachable by links"
    );
    assert!(statuses.contains(&404), "the site has broken links");
    assert!(statuses.contains(&302), "the site has a redirect loop");
    let requested = served.requested();
    assert!(
        requested.iter().all(|p| !p.starts_with(DISALLOWED_PREFIX)),
        "the crawler entered the disallowed area"
    );
    // The disallowed area exists: only robots.txt kept the crawler out.
    assert_eq!(
        http_get(addr, "/private/draft-0.html").await.unwrap().0,
        200
    );

    // The sitemap lists every subject page.
    let (_, sitemap) = http_get(addr, "/sitemap.xml").await.unwrap();
    for path in &expected {
        assert!(
            sitemap.contains(&format!("{}{path}", served.base_url())),
            "{path}"
        );
    }

    // Photos decode; the hostile resources are what they claim to be.
    let page = &site.pages()[0];
    let (status, png) = http_get_bytes(addr, &format!("/img/{}/0.png", page.subject.id()))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let photo = RgbaImage::from_png(&png).unwrap();
    assert_eq!((photo.width, photo.height), (96, 96));
    let (_, bomb) = http_get_bytes(addr, hostile::BOMB).await.unwrap();
    assert!(
        bomb.len() < 4 << 20,
        "the bomb is small on the wire ({} bytes)",
        bomb.len()
    );
    assert!(matches!(
        RgbaImage::from_png_with_limits(&bomb, DecodeLimits::default()),
        Err(ImageError::TooLarge(_))
    ));
    let (_, huge) = http_get_bytes(addr, hostile::HUGE).await.unwrap();
    assert_eq!(huge.len(), 1 << 20);
    assert_eq!(&huge[..4], b"\x89PNG");
    assert_eq!(http_get(addr, hostile::LOOP_A).await.unwrap().0, 302);
}

#[test]
fn the_warc_file_is_readable_by_an_independent_reader() {
    let site = Site::new(
        assets(),
        SiteParams {
            subjects: 20,
            ..SiteParams::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.warc.gz");
    let file = std::fs::File::create(&path).unwrap();
    let stats = suti_data::warc::write_site_warc(&site, "http://synthweb.test", file).unwrap();
    let script = r#"
import sys
from warcio.archiveiterator import ArchiveIterator
types, statuses, pngs = {}, {}, 0
with open(sys.argv[1], 'rb') as f:
    for record in ArchiveIterator(f):
        types[record.rec_type] = types.get(record.rec_type, 0) + 1
        if record.rec_type == 'response':
            code = record.http_headers.get_statuscode()
            statuses[code] = statuses.get(code, 0) + 1
            body = record.content_stream().read()
            if record.http_headers.get_header('Content-Type') == 'image/png' and body[:4] == b'\x89PNG':
                pngs += 1
print(types.get('warcinfo', 0), types.get('response', 0), statuses.get('200', 0), statuses.get('302', 0), statuses.get('404', 0), pngs)
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "warcio could not read the file (pip install warcio): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counts: Vec<usize> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts[0], 1, "one warcinfo record");
    assert_eq!(counts[1], stats.records - 1);
    assert_eq!((counts[2], counts[3], counts[4]), stats.statuses);
    let photos: usize = site.pages().iter().map(|p| p.photos.len()).sum();
    assert!(
        counts[5] >= photos,
        "{} PNG responses for {photos} photos",
        counts[5]
    );
}

#[test]
fn our_warc_reader_reads_back_what_the_writer_wrote() {
    let site = Site::new(
        assets(),
        SiteParams {
            subjects: 5,
            ..SiteParams::default()
        },
    );
    let mut bytes = Vec::new();
    let stats =
        suti_data::warc::write_site_warc(&site, "http://synthweb.test", &mut bytes).unwrap();
    let records = suti_data::warc::read_warc(&bytes, 64 << 20).unwrap();
    assert_eq!(records.len(), stats.records);
    assert_eq!(records[0].kind, "warcinfo");
    let page = &site.pages()[0];
    let uri = format!("http://synthweb.test{}", page.path());
    let record = records
        .iter()
        .find(|r| r.target_uri.as_deref() == Some(uri.as_str()))
        .unwrap();
    let http = record.http.as_ref().unwrap();
    assert_eq!(http.status, 200);
    assert_eq!(
        http.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&http.body).contains(&page.subject.class.noun));
    let redirect = records
        .iter()
        .find(|r| r.target_uri.as_deref() == Some("http://synthweb.test/hostile/loop-a"))
        .unwrap();
    assert_eq!(
        redirect.http.as_ref().unwrap().header("location"),
        Some("/hostile/loop-b")
    );
    // Truncated and garbage input are errors, not panics.
    assert!(suti_data::warc::read_warc(&bytes[..bytes.len() / 2], 64 << 20).is_err());
    assert!(
        suti_data::warc::read_warc(b"WARC/1.0\r\nContent-Length: 99999\r\n\r\nshort", 64 << 20)
            .is_err()
    );
    assert!(suti_data::warc::read_warc(b"GET / HTTP/1.1\r\n\r\n", 64 << 20).is_err());
}

#[test]
fn a_site_of_whole_classes_gives_both_drawings_of_every_class_a_page() {
    let site = Site::new(
        assets(),
        SiteParams {
            subjects: 8,
            both_vendors: true,
            ..SiteParams::default()
        },
    );
    let mut by_class: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for page in site.pages() {
        by_class
            .entry(page.subject.class.noun.clone())
            .or_default()
            .push(format!("{:?}", page.subject.vendor));
    }
    assert_eq!(by_class.len(), 4, "{by_class:?}");
    for (noun, vendors) in &by_class {
        assert_eq!(vendors.len(), 2, "{noun}: {vendors:?}");
        assert_ne!(vendors[0], vendors[1], "{noun}");
    }
    let unpaired = Site::new(
        assets(),
        SiteParams {
            subjects: 8,
            ..SiteParams::default()
        },
    );
    let classes: std::collections::BTreeSet<_> = unpaired
        .pages()
        .iter()
        .map(|p| p.subject.class.noun.clone())
        .collect();
    assert!(classes.len() > 4, "drawn one by one, classes rarely repeat");
}
