//! The generation engine: the loaded apprentice release (swapped atomically on hot reload) and
//! the dynamic batcher that denoises concurrent requests — each with its own demonstrations,
//! prompt and seeds — as one batch, up to a cap on images and a wait deadline.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use suti_data::RgbaImage;
pub use suti_factory::render::{
    DemoEncodingCache, Demonstration, Generation, LoadedModel, render_batch, render_batch_cached,
};
use suti_models::text::TextEncoder;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::metrics::ServingMetrics;

/// The release requests are served with; replaced whole on hot reload, so a batch that started
/// with one release finishes with it. It owns the cache of encoded demonstrations, which a new
/// release empties.
#[derive(Clone)]
pub struct ModelSlot {
    model: Arc<RwLock<Option<Arc<LoadedModel>>>>,
    demo_cache: Arc<DemoEncodingCache>,
}

impl Default for ModelSlot {
    /// An empty slot without a demonstration cache.
    fn default() -> Self {
        Self::with_demo_cache(0)
    }
}

impl ModelSlot {
    /// An empty slot whose demonstration cache holds up to `bytes` (0: no cache).
    pub fn with_demo_cache(bytes: usize) -> Self {
        Self {
            model: Arc::default(),
            demo_cache: Arc::new(DemoEncodingCache::new(bytes)),
        }
    }

    /// The current release, if one is loaded.
    pub fn current(&self) -> Option<Arc<LoadedModel>> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in `model` and empties the demonstration cache: encodings are the old release's.
    pub fn replace(&self, model: LoadedModel) {
        info!(version = %model.version, "serving release swapped in");
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(model));
        self.demo_cache.clear();
    }

    /// The cache of encoded demonstrations.
    pub fn demo_cache(&self) -> &DemoEncodingCache {
        &self.demo_cache
    }
}

/// What a generation produced.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The release that rendered it.
    pub version: String,
    /// One image per seed, in order.
    pub images: Vec<RgbaImage>,
    /// Requests in the batch it ran in (1 when alone).
    pub batched_with: usize,
}

/// Why the engine could not render a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// No release is loaded yet.
    #[error("no apprentice release is loaded yet")]
    NoModel,
    /// Too many requests are waiting.
    #[error("the server is at capacity; retry later")]
    Busy,
    /// The model failed.
    #[error("generation failed: {0}")]
    Failed(String),
}

struct Job {
    request: Generation,
    reply: oneshot::Sender<Result<Rendered, EngineError>>,
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Images denoised together at most.
    pub max_images: usize,
    /// How long the first request of a batch waits for company.
    pub wait: Duration,
    /// Requests queued at most.
    pub max_queued: usize,
}

/// The handle requests go through.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    slot: ModelSlot,
}

impl Engine {
    /// Starts the batcher on its own thread.
    pub fn start(
        slot: ModelSlot,
        text: Arc<TextEncoder>,
        limits: BatchLimits,
        metrics: ServingMetrics,
    ) -> Self {
        let (jobs, receiver) = mpsc::channel(limits.max_queued.max(1));
        let batch_slot = slot.clone();
        std::thread::Builder::new()
            .name("suti-batcher".into())
            .spawn(move || batcher(receiver, batch_slot, text, limits, metrics))
            .expect("spawning the batcher thread");
        Self { jobs, slot }
    }

    /// The model slot.
    pub fn slot(&self) -> &ModelSlot {
        &self.slot
    }

    /// Renders a request, batched with whatever else is waiting.
    pub async fn render(&self, request: Generation) -> Result<Rendered, EngineError> {
        if self.slot.current().is_none() {
            return Err(EngineError::NoModel);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { request, reply })
            .map_err(|_| EngineError::Busy)?;
        answer
            .await
            .unwrap_or_else(|_| Err(EngineError::Failed("the batcher stopped".into())))
    }
}

/// Collects jobs into batches of equal steps and guidance and renders them.
fn batcher(
    mut receiver: mpsc::Receiver<Job>,
    slot: ModelSlot,
    text: Arc<TextEncoder>,
    limits: BatchLimits,
    metrics: ServingMetrics,
) {
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match receiver.blocking_recv() {
                Some(job) => pending.push_back(job),
                None => return,
            }
        }
        // Company for the first job: wait up to the deadline or until the batch is full.
        let deadline = Instant::now() + limits.wait;
        loop {
            let images: usize = pending.iter().map(|j| j.request.seeds.len()).sum();
            if images >= limits.max_images {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match receiver.try_recv() {
                Ok(job) => pending.push_back(job),
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep((deadline - now).min(Duration::from_millis(2)))
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        let first = pending.pop_front().expect("a pending job");
        let key = (
            first.request.steps,
            first.request.guidance.to_bits(),
            first.request.demo_guidance.map(f32::to_bits),
        );
        let mut batch = vec![first];
        let mut images = batch[0].request.seeds.len();
        let mut rest = VecDeque::new();
        while let Some(job) = pending.pop_front() {
            let fits = images + job.request.seeds.len() <= limits.max_images;
            let job_key = (
                job.request.steps,
                job.request.guidance.to_bits(),
                job.request.demo_guidance.map(f32::to_bits),
            );
            if fits && job_key == key {
                images += job.request.seeds.len();
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        pending = rest;
        let Some(model) = slot.current() else {
            for job in batch {
                let _ = job.reply.send(Err(EngineError::NoModel));
            }
            continue;
        };
        let requests: Vec<&Generation> = batch.iter().map(|j| &j.request).collect();
        let started = Instant::now();
        let cache = Some(slot.demo_cache()).filter(|c| c.capacity_bytes() > 0);
        let rendered = render_batch_cached(&model, &text, &requests, cache);
        if slot
            .current()
            .is_some_and(|current| current.version != model.version)
        {
            // A release arrived while this batch ran with the old one: what it cached is stale.
            // The batcher is the cache's only writer, so nothing of the new release is lost.
            slot.demo_cache().clear();
        }
        metrics.observe_demo_cache(slot.demo_cache(), rendered.as_ref().ok());
        match rendered.map(|r| r.images) {
            Ok(mut per_request) => {
                let n = batch.len();
                tracing::debug!(
                    requests = n,
                    images,
                    ms = started.elapsed().as_millis() as u64,
                    "batch rendered"
                );
                for job in batch.into_iter().rev() {
                    let images = per_request.pop().unwrap_or_default();
                    let _ = job.reply.send(Ok(Rendered {
                        version: model.version.clone(),
                        images,
                        batched_with: n,
                    }));
                }
            }
            Err(e) => {
                warn!(error = %e, "a batch failed");
                for job in batch {
                    let _ = job.reply.send(Err(EngineError::Failed(e.to_string())));
                }
            }
        }
    }
}
