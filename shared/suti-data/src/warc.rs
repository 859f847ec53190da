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

/// One record read back from a WARC file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcRecord {
    /// `WARC-Type` (`warcinfo`, `response`, `request`, …).
    pub kind: String,
    /// `WARC-Target-URI`, if any.
    pub target_uri: Option<String>,
    /// For `response` records: the HTTP status, content type, headers and body.
    pub http: Option<HttpResponse>,
}

/// An archived HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a WARC file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WarcError {
    /// Decompression or reading failed.
    #[error("reading the WARC file: {0}")]
    Io(#[from] io::Error),
    /// The decompressed file would exceed its bound (a gzip bomb, or simply too big to hold).
    #[error("the WARC file decompresses to more than {limit} bytes")]
    TooLarge {
        /// The bound, bytes.
        limit: usize,
    },
    /// A record is malformed.
    #[error("malformed WARC record at byte {offset}: {message}")]
    Malformed {
        /// Offset of the record in the decompressed stream.
        offset: usize,
        /// What is wrong.
        message: String,
    },
}

fn split_head(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&data[..end], &data[end + 4..]))
}

fn parse_fields(head: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (first, fields)
}

/// How many times `max_record` the whole decompressed file may take: it is held in memory, so a
/// gzip bomb must stop while decompressing, not after.
pub const MAX_FILE_RECORDS: usize = 4;

/// Reads every record of a WARC file — gzip-compressed per record (`.warc.gz`) or plain.
/// Records larger than `max_record` bytes are refused rather than held in memory, and so is a
/// compressed file that inflates past [`MAX_FILE_RECORDS`] × `max_record`.
pub fn read_warc(bytes: &[u8], max_record: usize) -> Result<Vec<WarcRecord>, WarcError> {
    use std::io::Read;
    let data = if bytes.starts_with(&[0x1f, 0x8b]) {
        let limit = max_record.saturating_mul(MAX_FILE_RECORDS);
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)?;
        if out.len() > limit {
            return Err(WarcError::TooLarge { limit });
        }
        out
    } else {
        bytes.to_vec()
    };
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        // Skip the blank lines between records.
        while offset < data.len() && (data[offset] == b'\r' || data[offset] == b'\n') {
            offset += 1;
        }
        if offset >= data.len() {
            break;
        }
        let malformed = |message: &str| WarcError::Malformed {
            offset,
            message: message.to_string(),
        };
        let (head, rest) =
            split_head(&data[offset..]).ok_or_else(|| malformed("no end of header"))?;
        let (version, fields) = parse_fields(head);
        if !version.starts_with("WARC/") {
            return Err(malformed("not a WARC record"));
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = field("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| malformed("no Content-Length"))?;
        if length > max_record || length > rest.len() {
            return Err(malformed("record larger than the limit or the file"));
        }
        let block = &rest[..length];
        let kind = field("warc-type").unwrap_or_default();
        let http = if kind == "response" {
            split_head(block).map(|(h, body)| {
                let (status_line, headers) = parse_fields(h);
                let status = status_line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                HttpResponse {
                    status,
                    headers,
                    body: body.to_vec(),
                }
            })
        } else {
            None
        };
        records.push(WarcRecord {
            kind,
            target_uri: field("warc-target-uri"),
            http,
        });
        offset += head.len() + 4 + length;
    }
    Ok(records)
}

#[cfg(test)]
mod bounds {
    use super::*;

    #[test]
    fn a_gzip_bomb_is_refused_while_inflating() {
        use std::io::Write;
        // 64 MiB of zeros deflate to about 64 KiB.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let limit = (1 << 20) * MAX_FILE_RECORDS;
        match read_warc(&bomb, 1 << 20) {
            Err(WarcError::TooLarge { limit: l }) => assert_eq!(l, limit),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn truncated_and_garbage_files_are_malformed_not_panics() {
        let record = b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 100\r\n\r\nshort";
        assert!(read_warc(record, 1 << 20).is_err());
        assert!(read_warc(b"GET / HTTP/1.1\r\n\r\n", 1 << 20).is_err());
        assert!(read_warc(&[0x1f, 0x8b, 0, 1, 2, 3], 1 << 20).is_err());
        let no_length = b"WARC/1.0\r\nWARC-Type: response\r\n\r\nbody";
        assert!(read_warc(no_length, 1 << 20).is_err());
    }
}
