//! The web page end to end in a real headless browser (Debian's Chromium, driven by Selenium from
//! `tests/browser/drive_page.py`): the server's settings and examples on load, photos of one's own
//! chosen, reordered and removed, an example loaded in one click, a generation from a prompt
//! suggestion, a refused request's error, and the page at a phone's width. Each state is
//! screenshotted; `SUTI_UPDATE_SCREENSHOTS=1` writes them into `docs/images/` (the ones
//! docs/serving.md shows), otherwise into a temporary folder. `scripts/test` installs Chromium,
//! its driver and Selenium when they are missing.

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use serving::api::examples::Examples;
use serving::api::{ApiState, router};
use serving::engine::{BatchLimits, Engine, LoadedModel, ModelSlot};
use serving::metrics::ServingMetrics;
use suti_data::RgbaImage;
use suti_factory::base::untrained_base_model;
use suti_models::DitConfig;
use suti_runtime::config::ServingConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_renders_a_subject_in_a_real_browser() {
    let report = tempfile::tempdir().unwrap();
    std::fs::write(report.path().join("report.html"), "<h1>suti demo</h1>").unwrap();
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
            report_dir: report.path().display().to_string(),
            ..ServingConfig::default()
        }),
        keys: None,
        state: Arc::new(suti_state::InProcessState::new()),
        metrics: ServingMetrics::unregistered(),
        // Held-out EmojiWorld subjects, rendered from the assets as `suti serving` does.
        examples: Arc::new(Examples::configured(3)),
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
    let shots = if std::env::var_os("SUTI_UPDATE_SCREENSHOTS").is_some() {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/images"))
    } else {
        dir.path().to_path_buf()
    };
    std::fs::create_dir_all(&shots).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/drive_page.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{addr}"))
        .arg(&shots)
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
    assert!(stdout.contains("ok: refused: bad_steps"), "{stdout}");
    for state in [
        "start",
        "own-photos",
        "example",
        "results",
        "error",
        "phone",
    ] {
        let shot = shots.join(format!("page-{state}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
            "no screenshot {}",
            shot.display()
        );
    }

    // The report link leads to the configured report; the run's data beside it is not served.
    let client = reqwest::Client::new();
    let page = client
        .get(format!("http://{addr}/report/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("suti demo"));
    // Sent over a raw connection: an HTTP client would resolve the dots itself.
    for hidden in ["data/x.json", "eval/../report.html", "../../etc/passwd"] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET /report/{hidden} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{hidden}: {answer}");
    }
}
