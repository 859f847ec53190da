//! `suti generate` renders from a release folder and from an apprentice-trainer checkpoint folder,
//! writing one PNG per image and a contact sheet.

use std::collections::BTreeMap;
use std::process::Command;

use candle_core::Device;
use suti_data::RgbaImage;
use suti_factory::apprentice::apprentice_trainer;
use suti_factory::base::{base_model, untrained_base_model};
use suti_models::DitConfig;
use suti_runtime::config::{ApprenticeDemoAttention, ApprenticeStageConfig};

#[test]
fn generate_writes_images_and_a_contact_sheet_from_a_release_or_a_checkpoint() {
    let config = DitConfig {
        max_demos: 0,
        ..DitConfig::test()
    };
    let base = untrained_base_model(&config, 1, &Device::Cpu).unwrap();
    let trainer = apprentice_trainer(
        &base,
        &ApprenticeStageConfig {
            demo_attention: ApprenticeDemoAttention::Shared,
            ..ApprenticeStageConfig::default()
        },
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    let (config_json, weights) = base_model(&trainer).unwrap().to_bytes().unwrap();
    std::fs::write(release.join("config.json"), config_json).unwrap();
    std::fs::write(release.join("model.safetensors"), weights).unwrap();
    let checkpoint = dir.path().join("checkpoint");
    std::fs::create_dir_all(&checkpoint).unwrap();
    let notes: BTreeMap<String, String> = [(
        "model".to_string(),
        serde_json::to_string(trainer.config()).unwrap(),
    )]
    .into();
    let (state, meta) = trainer.checkpoint(notes).unwrap();
    std::fs::write(checkpoint.join("state.safetensors"), state).unwrap();
    std::fs::write(checkpoint.join("meta.json"), meta).unwrap();
    let demo = dir.path().join("demo.png");
    std::fs::write(&demo, RgbaImage::new(40, 30).to_png()).unwrap();

    for (name, model) in [("release", &release), ("checkpoint", &checkpoint)] {
        let out = dir.path().join(format!("out-{name}"));
        let output = Command::new(env!("CARGO_BIN_EXE_suti"))
            .args(["generate", "--model"])
            .arg(model)
            .args([
                "--prompt",
                "a teapot on the beach",
                "--num-images",
                "3",
                "--steps",
                "2",
            ])
            .arg("--demo")
            .arg(&demo)
            .args(["--caption", "my teapot", "--out"])
            .arg(&out)
            .env_remove("SUTI_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for k in 0..3 {
            let image =
                RgbaImage::from_png(&std::fs::read(out.join(format!("{k}.png"))).unwrap()).unwrap();
            assert_eq!((image.width, image.height), (16, 16));
        }
        let sheet =
            RgbaImage::from_png(&std::fs::read(out.join("contact-sheet.png")).unwrap()).unwrap();
        assert_eq!(
            (sheet.width, sheet.height),
            (2 + 3 * 18, 2 + 2 * 18),
            "two rows of 16-pixel cells"
        );
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_suti"))
        .args(["generate", "--prompt", "x", "--model"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("holds neither a release"));
}
