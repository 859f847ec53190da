//! Rendering from a loaded apprentice release: requests (a prompt, its demonstrations, seeds)
//! denoised together as one batch. Serving's dynamic batcher, `suti generate` and the evaluation
//! all render through [`render_batch`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use suti_data::RgbaImage;
use suti_models::diffusion::{Conditioning, SamplerConfig, SamplerKind, sample_seeded};
use suti_models::text::TextEncoder;
use suti_models::{DemoCache, Dit, TextCond};

use crate::BaseModel;
use crate::apprentice::{DemoSet, pack_demos};
use crate::pixels::{images_from_tensor, to_chw};

/// Caption of a demonstration given without one (by the API, `suti generate`).
pub const DEFAULT_CAPTION: &str = "a photo";

/// A loaded apprentice release.
pub struct LoadedModel {
    /// Release version.
    pub version: String,
    /// The network, frozen.
    pub dit: Dit,
}

impl LoadedModel {
    /// Builds the network of a release from its stored bundle.
    pub fn from_bundle(version: String, bundle: &BaseModel) -> crate::Result<Self> {
        if bundle.config.max_demos == 0 {
            return Err(crate::FactoryError::Invalid(format!(
                "release {version} takes no demonstrations"
            )));
        }
        Ok(Self {
            version,
            dit: bundle.dit()?,
        })
    }

    /// The side of the images it renders.
    pub fn image_size(&self) -> usize {
        self.dit.config().image_size
    }
}

/// A demonstration: an image and its caption.
#[derive(Debug, Clone)]
pub struct Demonstration {
    /// The image, any size (resampled to the model's).
    pub image: RgbaImage,
    /// Its caption.
    pub caption: String,
}

/// One rendering request: a prompt, its demonstrations and one seed per image.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The prompt.
    pub prompt: String,
    /// 0–8 demonstrations.
    pub demonstrations: Vec<Demonstration>,
    /// One seed per image wanted.
    pub seeds: Vec<u64>,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance weight.
    pub guidance: f32,
    /// Separate guidance weight of the demonstrations (`SamplerConfig::demo_guidance`).
    pub demo_guidance: Option<f32>,
}

/// Renders requests as one batch: one row per image, each row with its request's prompt and
/// demonstrations (padded to the batch's most and masked), each from its own seed. Requests must
/// share steps and guidance.
pub fn render_batch(
    model: &LoadedModel,
    text: &TextEncoder,
    requests: &[&Generation],
) -> crate::Result<Vec<Vec<RgbaImage>>> {
    Ok(render_batch_cached(model, text, requests, None)?.images)
}

/// What [`render_batch_cached`] rendered and how its demonstration cache served it.
#[derive(Debug, Default)]
pub struct RenderedBatch {
    /// Each request's images, in order.
    pub images: Vec<Vec<RgbaImage>>,
    /// Requests whose encoded demonstrations came from the cache.
    pub cache_hits: usize,
    /// Requests whose demonstrations were encoded (and then cached, if there is a cache).
    pub cache_misses: usize,
}

/// [`render_batch`] with a cache of encoded demonstrations: each request's demonstrations are
/// encoded once (not once per image), or taken from `cache` when the same reference set came
/// before with the same release.
pub fn render_batch_cached(
    model: &LoadedModel,
    text: &TextEncoder,
    requests: &[&Generation],
    cache: Option<&DemoEncodingCache>,
) -> crate::Result<RenderedBatch> {
    let Some(first) = requests.first() else {
        return Ok(RenderedBatch::default());
    };
    let device = model.dit.device().clone();
    let rows: Vec<(usize, u64)> = requests
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.seeds.iter().map(move |s| (i, *s)))
        .collect();
    let prompts: Vec<&str> = rows
        .iter()
        .map(|(i, _)| requests[*i].prompt.as_str())
        .collect();
    let prompt_cond = text.encode(&prompts)?;
    let null = TextCond::null(rows.len(), model.dit.config().text_dim, &device)?;
    let (mut cache_hits, mut cache_misses) = (0, 0);
    let mut encoded: Vec<Option<Arc<DemoCache>>> = Vec::with_capacity(requests.len());
    for request in requests {
        if request.demonstrations.is_empty() {
            encoded.push(None);
            continue;
        }
        let key = cache.map(|_| DemoEncodingCache::key(&model.version, request));
        if let Some(found) = cache.zip(key.as_ref()).and_then(|(c, k)| c.get(k)) {
            cache_hits += 1;
            encoded.push(Some(found));
            continue;
        }
        cache_misses += 1;
        let fresh = Arc::new(encode_demonstrations(model, text, &request.demonstrations)?);
        if let (Some(cache), Some(key)) = (cache, key) {
            cache.insert(key, fresh.clone());
        }
        encoded.push(Some(fresh));
    }
    let parts: Vec<(Option<&DemoCache>, usize)> = encoded
        .iter()
        .zip(requests)
        .map(|(e, r)| (e.as_deref(), r.seeds.len()))
        .collect();
    let demos = DemoCache::assemble(&parts)?;
    let sampler = SamplerConfig {
        steps: first.steps,
        guidance: first.guidance,
        demo_guidance: first.demo_guidance,
        kind: SamplerKind::DpmSolver2m,
        ..SamplerConfig::default()
    };
    let seeds: Vec<u64> = rows.iter().map(|(_, s)| *s).collect();
    let images = sample_seeded(
        &model.dit,
        &Conditioning {
            text: &prompt_cond,
            demos: demos.as_ref(),
            null_text: &null,
        },
        &sampler,
        &seeds,
    )?;
    let mut images = images_from_tensor(&images)?.into_iter();
    Ok(RenderedBatch {
        images: requests
            .iter()
            .map(|r| images.by_ref().take(r.seeds.len()).collect())
            .collect(),
        cache_hits,
        cache_misses,
    })
}

/// One request's demonstrations through the network: every block's keys and values.
fn encode_demonstrations(
    model: &LoadedModel,
    text: &TextEncoder,
    demonstrations: &[Demonstration],
) -> crate::Result<DemoCache> {
    let size = model.image_size();
    let images = demonstrations
        .iter()
        .map(|demo| to_chw(&demo.image, size))
        .collect();
    let captions: Vec<String> = demonstrations.iter().map(|d| d.caption.clone()).collect();
    let set = DemoSet::new(images, &captions, text)?;
    let all: Vec<usize> = (0..demonstrations.len()).collect();
    let demos = pack_demos(&[(&set, &all)], all.len(), size, model.dit.device())?;
    Ok(model.dit.encode_demos(&demos)?)
}

/// Encoded demonstrations kept between requests, keyed by the release and the reference set's
/// content, bounded in bytes; the least recently used go first. A user iterating on prompts for
/// one subject sends the same photos again and again: their encoding (the whole block stack) is
/// then skipped.
pub struct DemoEncodingCache {
    capacity_bytes: usize,
    inner: Mutex<CacheEntries>,
}

#[derive(Default)]
struct CacheEntries {
    entries: HashMap<[u8; 32], CacheEntry>,
    bytes: usize,
    clock: u64,
}

struct CacheEntry {
    demos: Arc<DemoCache>,
    bytes: usize,
    last_used: u64,
}

impl DemoEncodingCache {
    /// An empty cache holding at most `capacity_bytes` of keys and values (0: holds nothing).
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            capacity_bytes,
            inner: Mutex::default(),
        }
    }

    /// The key of a request's reference set under a release: a SHA-256 of the release version
    /// and every demonstration's size, pixels and caption, in order.
    pub fn key(version: &str, request: &Generation) -> [u8; 32] {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(version.as_bytes());
        for demo in &request.demonstrations {
            field(&demo.image.width.to_le_bytes());
            field(&demo.image.height.to_le_bytes());
            field(&demo.image.pixels);
            field(demo.caption.as_bytes());
        }
        hash.finalize().into()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, CacheEntries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached encoding under `key`, marked as just used.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<DemoCache>> {
        let mut inner = self.entries();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(key)?;
        entry.last_used = now;
        Some(entry.demos.clone())
    }

    /// Keeps `demos` under `key`, dropping the least recently used entries until it fits; an
    /// encoding larger than the whole capacity is not kept.
    pub fn insert(&self, key: [u8; 32], demos: Arc<DemoCache>) {
        let bytes = demos.byte_size();
        if bytes > self.capacity_bytes {
            return;
        }
        let mut inner = self.entries();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.bytes;
        }
        while inner.bytes + bytes > self.capacity_bytes {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.bytes;
            }
        }
        inner.bytes += bytes;
        inner.entries.insert(
            key,
            CacheEntry {
                demos,
                bytes,
                last_used: now,
            },
        );
    }

    /// Drops every entry (a new release makes them useless).
    pub fn clear(&self) {
        let mut inner = self.entries();
        inner.entries.clear();
        inner.bytes = 0;
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries().bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries().entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most bytes it holds.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }
}
