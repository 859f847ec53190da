//! Writing the synthetic web as a WARC/1.0 file (ISO 28500), the format Common Crawl publishes:
//! a `warcinfo` record, then one `response` record per URL holding the full HTTP response, each
//! record compressed as its own gzip member (`.warc.gz`) so readers can seek record by record.

use std::io::{self, Write};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::rng::fnv1a64;
use crate::synthweb::{Site, SiteBody, hostile};

/// What a WARC file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarcStats {
    /// Records written, `warcinfo` included.
    pub records: usize,
    /// Response records by HTTP status class: (2xx, 3xx, 4xx).
    pub statuses: (usize, usize, usize),
    /// Bytes written (compressed).
    pub bytes: u64,
}

/// A deterministic record id for a URL (a UUID-shaped hash), so the same site gives the same file.
fn record_id(key: &str) -> String {
    let a = fnv1a64(key.as_bytes());
    let b = fnv1a64(&a.to_le_bytes());
    format!(
        "<urn:uuid:{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}>",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        404 => "Not Found",
        _ => "Unknown",
    }
}

struct Counter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_record<W: Write>(
    out: &mut W,
    kind: &str,
    uri: Option<&str>,
    content_type: &str,
    date: &str,
    block: &[u8],
) -> io::Result<()> {
    let mut head = format!("WARC/1.0\r\nWARC-Type: {kind}\r\n");
    head.push_str(&format!(
        "WARC-Record-ID: {}\r\n",
        record_id(uri.unwrap_or(kind))
    ));
    head.push_str(&format!("WARC-Date: {date}\r\n"));
    if let Some(uri) = uri {
        head.push_str(&format!("WARC-Target-URI: {uri}\r\n"));
    }
    head.push_str(&format!("Content-Type: {content_type}\r\n"));
    head.push_str(&format!("Content-Length: {}\r\n\r\n", block.len()));
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(head.as_bytes())?;
    gz.write_all(block)?;
    gz.write_all(b"\r\n\r\n")?;
    out.write_all(&gz.finish()?)
}

/// Writes every public URL of `site` (as served at `base`), a broken link, the redirect loop and
/// the decompression bomb as one WARC file. The huge and slow resources are left out: a crawler
/// would have given up on them before a response was archived.
pub fn write_site_warc<W: Write>(site: &Site, base: &str, out: W) -> io::Result<WarcStats> {
    let mut out = Counter {
        inner: out,
        bytes: 0,
    };
    let date = "2026-01-01T00:00:00Z";
    let info = format!(
        "software: suti/{}\r\nformat: WARC File Format 1.0\r\nisPartOf: emojiworld-synthweb-seed-{}\r\ndescription: the EmojiWorld synthetic web\r\n",
        env!("CARGO_PKG_VERSION"),
        site.params().seed
    );
    write_record(
        &mut out,
        "warcinfo",
        None,
        "application/warc-fields",
        date,
        info.as_bytes(),
    )?;
    let mut stats = WarcStats {
        records: 1,
        ..WarcStats::default()
    };
    let mut paths = site.public_paths();
    paths.push("/s/no-such-subject.html".into());
    paths.push(hostile::LOOP_A.into());
    paths.push(hostile::BOMB.into());
    for path in paths {
        let response = site.respond(&path, base);
        let SiteBody::Bytes(body) = response.body else {
            continue;
        };
        let mut block = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            response.status,
            reason(response.status),
            response.content_type,
            body.len()
        );
        for (name, value) in &response.headers {
            block.push_str(&format!("{name}: {value}\r\n"));
        }
        block.push_str("\r\n");
        let mut block = block.into_bytes();
        block.extend_from_slice(&body);
        let uri = format!("{base}{path}");
        write_record(
            &mut out,
            "response",
            Some(&uri),
            "application/http; msgtype=response",
            date,
            &block,
        )?;
        stats.records += 1;
        match response.status {
            200..=299 => stats.statuses.0 += 1,
            300..=399 => stats.statuses.1 += 1,
            _ => stats.statuses.2 += 1,
        }
    }
    out.flush()?;
    stats.bytes = out.bytes;
    Ok(stats)
}
