//! `suti eval` as a process over an embedded run's storage: it loads the base, scorer and
//! apprentice named by their `LATEST` pointers, runs the protocol on EmojiWorld's held-out
//! subjects and on a folder in the real DreamBench layout (a JPEG photograph among the photos),
//! and writes the JSON, markdown, HTML and contact sheets; a second run reads DINOv2 and CLIP from
//! Hugging Face folders of random weights. The models here are untrained, so the test checks the
//! protocol and what the metrics can tell apart (true renders of the subject are nearer it than
//! its distractors, unlike an untrained model's output), not the models' quality.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde_json::json;
use suti_data::{Assets, RgbaImage, Split};
use suti_factory::ScorerModel;
use suti_factory::apprentice::apprentice_trainer;
use suti_factory::base::{base_model, untrained_base_model};
use suti_models::scorer::{Scorer, ScorerConfig};
use suti_models::{DitConfig, Params};
use suti_runtime::config::{ApprenticeDemoAttention, ApprenticeStageConfig};

fn tensors_of(varmap: &VarMap) -> HashMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect()
}

/// Publishes an untrained base (the `test` preset), its apprentice and a scorer into the local
/// storage under `data`, as the pipeline would.
async fn publish_models(data: &Path) {
    let device = Device::Cpu;
    let config = DitConfig {
        max_demos: 0,
        ..DitConfig::test()
    };
    let base = untrained_base_model(&config, 1, &device).unwrap();
    let apprentice = base_model(
        &apprentice_trainer(
            &base,
            &ApprenticeStageConfig {
                demo_attention: ApprenticeDemoAttention::Shared,
                ..ApprenticeStageConfig::default()
            },
        )
        .unwrap(),
    )
    .unwrap();
    let scorer_varmap = VarMap::new();
    let scorer_config = ScorerConfig::default();
    Scorer::new(&scorer_config, &Params::train(&scorer_varmap, 2, &device)).unwrap();
    let scorer =
        ScorerModel::from_tensors(scorer_config, tensors_of(&scorer_varmap), &device).unwrap();

    let store = suti_runtime::connect_storage(&suti_runtime::SutiConfig::embedded(data))
        .await
        .unwrap();
    for (name, (config_json, weights)) in [
        ("base", base.to_bytes().unwrap()),
        ("apprentice", apprentice.to_bytes().unwrap()),
        ("scorer", scorer.to_bytes().unwrap()),
    ] {
        suti_stage::publish_model_version(
            &store,
            name,
            "v1",
            vec![("config.json", config_json), ("model.safetensors", weights)],
        )
        .await
        .unwrap();
    }
}

fn eval(data: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_suti"))
        .arg("eval")
        .arg("--data")
        .arg(data)
        .args([
            "--prompts",
            "2",
            "--images",
            "1",
            "--demos",
            "1,2",
            "--expert-steps",
            "2",
            "--steps",
            "2",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .env_remove("SUTI_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("| method |") && stdout.contains("| lead |"),
        "the tables are printed: {stdout}"
    );
    for file in ["eval.json", "eval.md", "eval.html"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    // Off a terminal the progress is plain lines.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("eval: 0 items") && stderr.contains("eval: done, "),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    // eval.html plots each method's scores: every dot and whisker is the table's figure.
    let html = std::fs::read_to_string(out.join("eval.html")).unwrap();
    for row in report["rows"].as_array().unwrap() {
        let Some(margin) = row["margin"].as_object() else {
            continue;
        };
        let label = row["label"].as_str().unwrap();
        let mark = format!("data-metric=\"margin\" data-method=\"{label}\"");
        let at = html
            .find(&mark)
            .unwrap_or_else(|| panic!("no {mark} in eval.html"));
        let attribute = |name: &str| -> f64 {
            let rest = &html[at..];
            let start = rest.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            rest[start..start + rest[start..].find('"').unwrap()]
                .parse()
                .unwrap()
        };
        for (name, field) in [("data-mean", "mean"), ("data-lo", "lo"), ("data-hi", "hi")] {
            let drawn = attribute(name);
            let table = margin[field].as_f64().unwrap();
            assert!(
                (drawn - table).abs() < 1e-9,
                "{label} {field}: {drawn} vs {table}"
            );
        }
        let time = format!("data-label=\"{}\"", row["label"].as_str().unwrap());
        assert!(
            row["method"]["kind"] == "real_images" || html.contains(&time),
            "no time bar for {time}"
        );
    }
    report
}

fn labels(report: &serde_json::Value) -> Vec<String> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect()
}

/// The mean of an estimate column, checking its interval holds it.
fn mean_of(row: &serde_json::Value, column: &str) -> f64 {
    let e = &row[column];
    let (mean, lo, hi) = (
        e["mean"]
            .as_f64()
            .unwrap_or_else(|| panic!("{column}: {row}")),
        e["lo"].as_f64().unwrap(),
        e["hi"].as_f64().unwrap(),
    );
    assert!(lo <= mean + 1e-9 && mean <= hi + 1e-9, "{column}: {e}");
    mean
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_runs_the_protocol_on_emojiworld_and_on_a_dreambench_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    publish_models(&data).await;

    // EmojiWorld's held-out subjects, rendered into the output folder: both drawings of one
    // class, the expert on the first only.
    let out = dir.path().join("emojiworld");
    // The apprentice with its text unguided and its demonstrations guided on their own.
    let args = [
        "--subjects",
        "2",
        "--expert-subjects",
        "1",
        "--guidance",
        "2",
        "--apprentice-guidance",
        "1",
        "--demo-guidance",
        "3",
    ];
    let report = eval(&data, &out, &args);
    assert_eq!(
        (
            &report["guidance"],
            &report["apprentice_guidance"],
            &report["demo_guidance"]
        ),
        (&json!(2.0), &json!(1.0), &json!(3.0)),
        "the report records how each method was guided"
    );
    assert_eq!(
        labels(&report),
        [
            "real images",
            "base (text only)",
            "expert (2 steps)",
            "apprentice, 1 demo",
            "apprentice, 2 demos",
            "control: apprentice, 2 shuffled demos",
            "control: apprentice, no demos",
        ]
    );
    assert_eq!(report["candidates"], 8, "the subject and 7 distractors");
    assert_eq!(report["matched_contexts"], true);
    assert!(
        report["centring"]
            .as_str()
            .unwrap()
            .contains("training-split renders"),
        "{}",
        report["centring"]
    );
    assert!(
        out.join("benchmark/centring").read_dir().unwrap().count() == 1,
        "the centring mean is stored with the set"
    );
    let rows = report["rows"].as_array().unwrap();
    for (i, row) in rows.iter().enumerate() {
        let (subjects, images) = if i == 2 { (1, 2) } else { (2, 4) };
        assert_eq!(row["subjects"], subjects, "{row}");
        assert_eq!(
            row["images"], images,
            "2 prompts × 1 image per subject: {row}"
        );
        for column in ["margin", "similarity", "clip_i", "clip_t"] {
            assert!((-1.0..=1.0).contains(&mean_of(row, column)), "{row}");
        }
        for column in ["identification", "instance"] {
            assert!((0.0..=1.0).contains(&mean_of(row, column)), "{row}");
        }
    }
    let real = mean_of(&rows[0], "margin");
    let base = mean_of(&rows[1], "margin");
    assert!(
        real > 0.05 && real > base + 0.05,
        "true renders of the subject ({real:.3}) are nearer it than its distractors, unlike an \
         untrained model's output ({base:.3})"
    );
    assert_eq!(
        mean_of(&rows[0], "identification"),
        1.0,
        "every true render is identified"
    );
    assert!(
        rows[2]["seconds_per_subject"].as_f64().unwrap()
            > rows[1]["seconds_per_subject"].as_f64().unwrap(),
        "the expert's time includes its fine-tune"
    );
    let leads: Vec<&str> = report["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        leads,
        [
            "apprentice, 2 demos − base (text only)",
            "expert (2 steps) − base (text only)",
            "apprentice, 2 demos − expert (2 steps)",
            "apprentice, 2 demos − control: apprentice, 2 shuffled demos",
            "apprentice, 2 demos − control: apprentice, no demos",
        ]
    );
    assert_eq!(
        report["leads"][1]["subjects"], 1,
        "leads with the expert compare its subjects only"
    );
    let subject = report["subjects"][0].as_str().unwrap();
    let sheet = RgbaImage::from_png(
        &std::fs::read(out.join("sheets").join(format!("{subject}.png"))).unwrap(),
    )
    .unwrap();
    // The demonstrations' row and one row per method, each 16 pixels high plus padding.
    assert!(sheet.height >= 8 * 16, "{}×{}", sheet.width, sheet.height);
    let markdown = std::fs::read_to_string(out.join("eval.md")).unwrap();
    assert!(
        markdown.contains("| lead |") && markdown.contains("95 %"),
        "{markdown}"
    );

    // The real DreamBench layout: photos (a JPEG among them) and prompts_and_classes.txt.
    let bench = dir.path().join("dreambench");
    let assets = Assets::open_default().expect("scripts/fetch-assets");
    let held_out = assets.catalog().subjects(Split::HeldOut);
    let assets_dir = std::env::var_os("SUTI_ASSETS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/suti/assets")
        });
    for (name, subject) in [("my_subject", &held_out[3]), ("my_other", &held_out[6])] {
        let sprite = assets.sprite(subject).unwrap();
        let folder = bench.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for (k, scene) in [suti_data::Scene::Beach, suti_data::Scene::City]
            .into_iter()
            .enumerate()
        {
            let (img, _) =
                suti_data::render::render_with_box(&sprite, scene, None, None, k as u64, 96);
            std::fs::write(folder.join(format!("0{k}.png")), img.to_png()).unwrap();
        }
        std::fs::copy(
            assets_dir.join("testimages/rocket.jpg"),
            folder.join("02.jpg"),
        )
        .unwrap();
    }
    std::fs::write(
        bench.join("prompts_and_classes.txt"),
        format!(
            "Classes\n\nsubject_name,class\nmy_subject,{}\nmy_other,{}\n\nPrompts\n\n\
             Object Prompts\n\n\
             prompt_list = [\n'a {{0}} {{1}} in the jungle'.format(unique_token, class_token),\n\
             'a {{0}} {{1}} in the snow'.format(unique_token, class_token),\n]\n\n\
             Live Subject Prompts\n\nprompt_list = [\n\
             'a {{0}} {{1}} wearing a red hat'.format(unique_token, class_token),\n]\n",
            held_out[3].class.noun, held_out[6].class.noun
        ),
    )
    .unwrap();
    let out = dir.path().join("dreambench-out");
    let report = eval(
        &data,
        &out,
        &["--dreambench", bench.to_str().unwrap(), "--subjects", "1"],
    );
    assert!(report["set"].as_str().unwrap().starts_with("DreamBench"));
    assert_eq!(report["subjects"][0], "my_subject");
    assert_eq!(report["matched_contexts"], false);
    assert_eq!(
        report["candidates"], 2,
        "the other subject is the distractor"
    );
    assert!(
        report["centring"].as_str().unwrap().contains("photos"),
        "{}",
        report["centring"]
    );
    let rows = report["rows"].as_array().unwrap();
    assert!(
        rows[0]["clip_t"].is_null(),
        "real photos have no prompt to follow: {}",
        rows[0]
    );
    assert_eq!(rows[0]["images"], 3, "each photo against the other two");
    assert_eq!(rows[3]["images"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_reads_dinov2_and_clip_from_hugging_face_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    publish_models(&data).await;
    // Randomly initialised weights in the exact Hugging Face layout (no registry here ships the
    // real ones; docs/eval.md says where they come from).
    let dino = dir.path().join("dinov2-small");
    let clip = dir.path().join("clip-vit-base-patch32");
    suti_models::reference::write_random_dinov2(&dino, 1, true);
    suti_models::reference::write_random_clip(&clip, 2, true);
    let out = dir.path().join("out");
    let report = eval(
        &data,
        &out,
        &[
            "--subjects",
            "1",
            "--expert-subjects",
            "1",
            "--subject-encoder",
            "dinov2",
            dino.to_str().unwrap(),
            "--scorer",
            "clip",
            clip.to_str().unwrap(),
        ],
    );
    assert_eq!(report["subject_encoder"], "dinov2");
    assert_eq!(report["scorer"], "clip");
    for row in report["rows"].as_array().unwrap() {
        for column in ["margin", "similarity", "clip_i", "clip_t"] {
            assert!((-1.0..=1.0).contains(&mean_of(row, column)), "{row}");
        }
    }
    // A folder that is not one is refused with the file it lacks.
    let output = Command::new(env!("CARGO_BIN_EXE_suti"))
        .args(["eval", "--data"])
        .arg(&data)
        .args(["--subjects", "1", "--subject-encoder", "dinov2"])
        .arg(dir.path().join("missing"))
        .arg("--out")
        .arg(dir.path().join("refused"))
        .env_remove("SUTI_CONFIG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DINOv2"), "{stderr}");
}
