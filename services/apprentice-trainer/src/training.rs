//! The training loop: on a thread of its own, it loads every indexed shard, trains the apprentice
//! from the base (or from its last checkpoint), checkpoints and publishes releases.

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use suti_factory::BaseModel;
use suti_factory::apprentice::{SubjectNaming, Triplet, apprentice_step, apprentice_trainer};
use suti_factory::artifacts::{
    publish_release, read_latest_checkpoint, read_shard, write_checkpoint,
};
use suti_factory::bundle::{CONFIG_FILE, WEIGHTS_FILE};
use suti_factory::training::{DenoiserTrainer, LossHistory};
use suti_messages::{ApprenticeMetrics, ApprenticePublishedV1};
use suti_models::text::TextEncoder;
use suti_queue::{Broker, Envelope, Topology};
use suti_runtime::config::ApprenticeStageConfig;
use suti_stage::HandlerError;
use suti_state::SharedState;
use suti_storage::layout::APPRENTICE_MODEL;
use suti_storage::{SharedStore, layout};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::handler::INDEX_SET;
use crate::metrics::TrainerMetrics;

/// Whether a run that has made `steps_done` steps, with `shards` indexed shards the first of
/// which came `since_first` ago, still waits before its first step.
fn waits_for_shards(
    steps_done: u64,
    shards: usize,
    since_first: Option<Duration>,
    config: &ApprenticeStageConfig,
) -> bool {
    steps_done == 0
        && shards < config.start_shards
        && since_first.is_some_and(|waited| waited < Duration::from_secs(config.start_wait_secs))
}

/// What the trainer works with.
#[derive(Clone)]
pub struct TrainerBackends {
    /// Storage.
    pub storage: SharedStore,
    /// State (the index).
    pub state: SharedState,
    /// Broker (releases).
    pub broker: Arc<dyn Broker>,
    /// Where releases go.
    pub topology: Topology,
}

/// The training loop: runs on a thread of its own until `shutdown`, then checkpoints.
pub struct TrainingLoop {
    backends: TrainerBackends,
    text: Arc<TextEncoder>,
    config: ApprenticeStageConfig,
    metrics: Option<TrainerMetrics>,
    loaded: HashSet<String>,
    triplets: Vec<Triplet>,
    clusters: usize,
    recent_losses: Vec<f32>,
    /// The loss curve since this process started (published with each release).
    history: LossHistory,
    examples_seen: u64,
    base_version: String,
}

/// Checkpoint notes: where training came from, how far it got, and the model's shape (so that
/// `suti generate` can render from a checkpoint folder).
fn notes(
    base_version: &str,
    examples_seen: u64,
    config: &ApprenticeStageConfig,
    model: &suti_models::DitConfig,
) -> BTreeMap<String, String> {
    [
        ("base_version".to_string(), base_version.to_string()),
        (
            "model".to_string(),
            serde_json::to_string(model).unwrap_or_default(),
        ),
        ("examples_seen".to_string(), examples_seen.to_string()),
        (
            "recipe".to_string(),
            serde_json::to_string(config).unwrap_or_default(),
        ),
    ]
    .into()
}

impl TrainingLoop {
    /// A loop over `backends`.
    pub fn new(
        backends: TrainerBackends,
        text: Arc<TextEncoder>,
        config: ApprenticeStageConfig,
        metrics: Option<TrainerMetrics>,
    ) -> Self {
        Self {
            backends,
            text,
            config,
            metrics,
            loaded: HashSet::new(),
            triplets: Vec::new(),
            clusters: 0,
            recent_losses: Vec::new(),
            history: LossHistory::new(),
            examples_seen: 0,
            base_version: String::new(),
        }
    }

    /// Starts from the latest checkpoint, or from `base` when there is none.
    async fn start(
        &mut self,
        base: &BaseModel,
        base_version: &str,
    ) -> Result<DenoiserTrainer, HandlerError> {
        let mut trainer = apprentice_trainer(base, &self.config)
            .map_err(|e| HandlerError::permanent("model", e))?;
        self.base_version = base_version.to_string();
        if let Some(saved) =
            read_latest_checkpoint(&self.backends.storage, APPRENTICE_MODEL).await?
        {
            trainer
                .resume(&saved.tensors, &saved.meta)
                .map_err(|e| HandlerError::permanent("bad_checkpoint", e))?;
            let meta: suti_models::train::CheckpointMeta = serde_json::from_slice(&saved.meta)
                .map_err(|e| HandlerError::permanent("bad_checkpoint", e))?;
            if let Some(v) = meta.notes.get("base_version") {
                self.base_version = v.clone();
            }
            self.examples_seen = meta
                .notes
                .get("examples_seen")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            info!(
                step = saved.step,
                examples_seen = self.examples_seen,
                "resumed from the checkpoint"
            );
        } else {
            info!(base = %base_version, "starting from the base model");
        }
        Ok(trainer)
    }

    /// Loads indexed shards not loaded yet; returns how many were added.
    async fn refresh(&mut self, size: usize) -> Result<usize, HandlerError> {
        let storage = self.backends.storage.clone();
        let mut added = 0;
        for object in storage.list(layout::APPRENTICE_SHARDS_PREFIX).await? {
            let shard_key = object.key.as_str().to_string();
            if self.loaded.contains(&shard_key)
                || !self
                    .backends
                    .state
                    .set_contains(INDEX_SET, &shard_key)
                    .await?
            {
                continue;
            }
            self.loaded.insert(shard_key.clone());
            match self.load_shard(&shard_key, size).await {
                Ok(triplets) if !triplets.is_empty() => {
                    added += triplets.len();
                    self.clusters += 1;
                    self.triplets.extend(triplets);
                }
                Ok(_) => {}
                Err(e) if e.is_retryable() => {
                    self.loaded.remove(&shard_key);
                    return Err(e);
                }
                Err(e) => warn!(shard = %shard_key, error = %e, "shard skipped"),
            }
        }
        if let Some(m) = &self.metrics {
            m.clusters.set(self.clusters as i64);
        }
        Ok(added)
    }

    async fn load_shard(&self, shard_key: &str, size: usize) -> Result<Vec<Triplet>, HandlerError> {
        read_shard(
            &self.backends.storage,
            shard_key,
            size,
            &self.text,
            &SubjectNaming::of(&self.config),
        )
        .await
    }

    async fn checkpoint(&self, trainer: &DenoiserTrainer) -> Result<(), HandlerError> {
        let (tensors, meta) = trainer
            .checkpoint(notes(
                &self.base_version,
                self.examples_seen,
                &self.config,
                trainer.config(),
            ))
            .map_err(|e| HandlerError::permanent("model", e))?;
        write_checkpoint(
            &self.backends.storage,
            APPRENTICE_MODEL,
            trainer.steps_done(),
            tensors,
            meta,
        )
        .await?;
        info!(step = trainer.steps_done(), "checkpoint written");
        Ok(())
    }

    async fn release(&self, trainer: &DenoiserTrainer) -> Result<String, HandlerError> {
        let version = publish_release(&self.backends.storage, trainer, &self.history).await?;
        let window = &self.recent_losses;
        let message = ApprenticePublishedV1 {
            version: version.clone(),
            weights_key: layout::model_file(APPRENTICE_MODEL, &version, WEIGHTS_FILE),
            config_key: layout::model_file(APPRENTICE_MODEL, &version, CONFIG_FILE),
            base_version: self.base_version.clone(),
            metrics: ApprenticeMetrics {
                loss: window.iter().sum::<f32>() / window.len().max(1) as f32,
                steps: trainer.steps_done(),
                examples_seen: self.examples_seen,
                clusters: self.clusters as u32,
            },
            published_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let envelope = Envelope::encode(&message, format!("apprentice-{version}"), None)?;
        self.backends
            .broker
            .publish(&self.backends.topology, &envelope)
            .await?;
        if let Some(m) = &self.metrics {
            m.releases.inc();
        }
        info!(%version, step = trainer.steps_done(), "apprentice released");
        Ok(version)
    }

    /// Trains until `shutdown`, then writes a last checkpoint. Blocks the calling thread: run it
    /// with `spawn_blocking`; `runtime` runs the storage, state and broker calls.
    pub fn run(
        mut self,
        base: Arc<BaseModel>,
        base_version: String,
        runtime: tokio::runtime::Handle,
        shutdown: CancellationToken,
    ) -> Result<(), HandlerError> {
        let size = base.config.image_size;
        let mut trainer = runtime.block_on(self.start(&base, &base_version))?;
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new_spinner()
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut last_refresh: Option<Instant> = None;
        // When the first shard came, while a fresh run waits for `start_shards` of them: an
        // apprentice trained on the first clusters alone learns them, not to read.
        let mut first_shard: Option<Instant> = None;
        let mut waiting_logged = false;
        while !shutdown.is_cancelled() {
            if last_refresh
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.config.refresh_secs))
            {
                match runtime.block_on(self.refresh(size)) {
                    Ok(added) if added > 0 => {
                        info!(
                            added,
                            triplets = self.triplets.len(),
                            clusters = self.clusters,
                            "training set grew"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cannot refresh the training set; retrying later"),
                }
                last_refresh = Some(Instant::now());
            }
            if !self.loaded.is_empty() {
                first_shard.get_or_insert_with(Instant::now);
            }
            let waiting = waits_for_shards(
                trainer.steps_done(),
                self.loaded.len(),
                first_shard.map(|t| t.elapsed()),
                &self.config,
            );
            if waiting && !waiting_logged {
                info!(
                    shards = self.loaded.len(),
                    start_shards = self.config.start_shards,
                    "waiting for more shards before the first step"
                );
                waiting_logged = true;
            }
            if self.triplets.is_empty() || waiting {
                // A plain sleep, not the runtime's timer: this thread may outlive the runtime's
                // timer when the process is shutting down.
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let started = Instant::now();
            let loss = apprentice_step(&mut trainer, &self.triplets, &self.config, &self.text)
                .map_err(|e| HandlerError::permanent("model", e))?;
            self.examples_seen += self.config.batch as u64;
            self.recent_losses.push(loss);
            self.history.record(trainer.steps_done(), loss);
            if self.recent_losses.len() > 50 {
                self.recent_losses.remove(0);
            }
            let mean = self.recent_losses.iter().sum::<f32>() / self.recent_losses.len() as f32;
            if let Some(m) = &self.metrics {
                m.steps.inc();
                m.examples_seen.inc_by(self.config.batch as u64);
                m.loss.set(f64::from(mean));
                m.busy_seconds.inc_by(started.elapsed().as_secs_f64());
            }
            let step = trainer.steps_done();
            bar.set_message(format!(
                "apprentice step {step}, {} examples seen, loss {mean:.4}, {} clusters",
                self.examples_seen, self.clusters
            ));
            bar.tick();
            if step % self.config.checkpoint_every == 0
                && let Err(e) = runtime.block_on(self.checkpoint(&trainer))
            {
                warn!(error = %e, "checkpoint failed; training goes on");
            }
            if step % self.config.release_every == 0
                && let Err(e) = runtime.block_on(self.release(&trainer))
            {
                warn!(error = %e, "release failed; the next one will try again");
            }
        }
        bar.finish_and_clear();
        if trainer.steps_done() > 0 {
            runtime.block_on(self.checkpoint(&trainer))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use suti_runtime::SutiConfig;

    use super::*;

    #[test]
    fn a_fresh_run_waits_for_its_shards_or_until_the_wait_is_over() {
        let mut config = SutiConfig::embedded("unused").apprentice;
        config.start_shards = 3;
        config.start_wait_secs = 60;
        let soon = Some(Duration::from_secs(5));
        assert!(waits_for_shards(0, 1, soon, &config));
        assert!(waits_for_shards(0, 2, soon, &config));
        assert!(!waits_for_shards(0, 3, soon, &config), "all shards are in");
        assert!(
            !waits_for_shards(0, 1, Some(Duration::from_secs(61)), &config),
            "the wait is over"
        );
        assert!(
            !waits_for_shards(40, 1, soon, &config),
            "a resumed run goes on"
        );
        // The defaults start on the first shard.
        let defaults = SutiConfig::embedded("unused").apprentice;
        assert!(!waits_for_shards(0, 1, soon, &defaults));
    }
}
