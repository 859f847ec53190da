//! The web page end to end in a real headless browser (Debian's Chromium, driven by Selenium from
//! `tests/browser/drive_page.py`): choose demonstration images, type a prompt, press Generate, see
//! the images. `scripts/test` installs Chromium, its driver and Selenium when they are missing.

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use serving::api::{ApiState, router};
use serving::engine::{BatchLimits, Engine, LoadedModel, ModelSlot};
use serving::metrics::ServingMetrics;
use suti_data::RgbaImage;
use suti_factory::base::untrained_base_model;
use suti_models::DitConfig;
use suti_runtime::config::ServingConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_renders_a_subject_in_a_real_browser() {
    let model = untrained_base_model(&DitConfig::test(), 1, &Device::Cpu).unwrap();
    let slot = ModelSlot::default();
    slot.replace(LoadedModel::from_bundle("page-test".into(), &model).unwrap());
    let text = suti_factory::towers::load_text_encoder(
        &suti_factory::towers::text_encoder_dir(""),
        &Device::Cpu,
    )
    .unwrap();
    let engine = Engine::start(
        slot,
        Arc::new(text),
        BatchLimits {
            max_images: 8,
            wait: Duration::from_millis(5),
            max_queued: 8,
        },
        ServingMetrics::unregistered(),
    );
    let state = ApiState {
        engine,
        // Few steps keep the page quick; the other limits are the defaults.
        config: Arc::new(ServingConfig {
            default_steps: 4,
            ..ServingConfig::default()
        }),
        keys: None,
        state: Arc::new(suti_state::InProcessState::new()),
        metrics: ServingMetrics::unregistered(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let dir = tempfile::tempdir().unwrap();
    let mut demos = Vec::new();
    for k in 0..2u8 {
        let mut image = RgbaImage::new(32, 32);
        for (i, p) in image.pixels.chunks_exact_mut(4).enumerate() {
            p.copy_from_slice(&[(i as u8).wrapping_mul(3 + k), 90, 200 - k * 50, 255]);
        }
        let path = dir.path().join(format!("demo-{k}.png"));
        std::fs::write(&path, image.to_png()).unwrap();
        demos.push(path.display().to_string());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/drive_page.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{addr}"))
        .args(&demos)
        .output()
        .await
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the page did not work in Chromium (scripts/test installs chromium, chromium-driver and \
         selenium):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("2 images from page-test"), "{stdout}");
}
