//! `suti all` and the demo's services: the six services as tasks of one process. With
//! `in_process` backends they share this process's queue and state (the embedded mode); with
//! RabbitMQ, S3 and Redis they are a single-box deployment.

use suti_runtime::SutiConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Starts every service; each ends when `shutdown` is cancelled (or fails).
/// `apprentice_shutdown` stops the apprentice-trainer alone (a child of `shutdown`, or `shutdown`
/// itself), so that the demo can end its training before it evaluates the release on the same
/// cores.
pub fn spawn_services(
    config: &SutiConfig,
    shutdown: &CancellationToken,
    apprentice_shutdown: &CancellationToken,
) -> JoinSet<anyhow::Result<()>> {
    let mut services = JoinSet::new();
    let (c, s) = (config.clone(), shutdown.clone());
    services.spawn(async move {
        crawler_clusterer::service::run(c, s)
            .await
            .map_err(anyhow::Error::from)
    });
    let (c, s) = (config.clone(), shutdown.clone());
    services.spawn(async move {
        expert_finetuner::run(c, s)
            .await
            .map_err(anyhow::Error::from)
    });
    let (c, s) = (config.clone(), shutdown.clone());
    services.spawn(async move { generator::run(c, s).await.map_err(anyhow::Error::from) });
    let (c, s) = (config.clone(), shutdown.clone());
    services.spawn(async move { clip_filter::run(c, s).await.map_err(anyhow::Error::from) });
    let (c, s) = (config.clone(), apprentice_shutdown.clone());
    services.spawn(async move {
        apprentice_trainer::run(c, s)
            .await
            .map_err(anyhow::Error::from)
    });
    let (c, s) = (config.clone(), shutdown.clone());
    services.spawn(async move { serving::run(c, s).await.map_err(anyhow::Error::from) });
    services
}

/// Runs every service until `shutdown`; one failing service stops the others, so the process is
/// restarted as a whole.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut services = spawn_services(&config, &shutdown, &shutdown);
    let mut first_error = None;
    while let Some(done) = services.join_next().await {
        shutdown.cancel();
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r)
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
