//! `suti bench tower`: the image tower's (EfficientNet-Lite0) throughput on random images, by the
//! channels-last CPU kernels the product runs and by candle's own convolutions (the path before
//! them), to compare with PyTorch's twin (`benches/reference/tower_twin.py`).

use std::time::Instant;

use clap::Args;
use serde_json::json;
use suti_models::image_tower::TowerTap;
use suti_rng::SplitMix64;

use crate::bench_report::BenchReport;

/// Options of `suti bench tower`.
#[derive(Debug, Args)]
pub struct TowerBenchArgs {
    /// Images per forward pass (the crawler embeds 16 at a time).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Input side in pixels.
    #[arg(long, default_value_t = suti_models::image_tower::INPUT_SIZE)]
    side: usize,
    /// Timed batches (after one warm-up batch).
    #[arg(long, default_value_t = 4)]
    batches: usize,
    /// Skip candle's composed convolutions (slow: a few images per second).
    #[arg(long)]
    no_composed: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Times the tower and prints images per second for each path.
pub fn tower(args: TowerBenchArgs) -> anyhow::Result<()> {
    let device = crate::bench_models::bench_device()?;
    let tower = suti_factory::towers::load_image_tower(
        &suti_factory::towers::image_tower_path(""),
        &device,
    )?;
    let mut rng = SplitMix64::new(5);
    let pixels: Vec<f32> = (0..args.batch * 3 * args.side * args.side)
        .map(|_| rng.unit())
        .collect();
    let images =
        candle_core::Tensor::from_vec(pixels, (args.batch, 3, args.side, args.side), &device)?;
    let mut report = BenchReport::start(
        "tower",
        args.json,
        format!(
            "suti bench tower: EfficientNet-Lite0 features, batch {} at {}×{}, {} timed batches",
            args.batch, args.side, args.side, args.batches
        ),
    );
    let mut paths = vec![("channels_last_kernels", false)];
    if !args.no_composed {
        paths.push(("candle_composed", true));
    }
    let mut rates = Vec::new();
    for (name, composed) in paths {
        let run = || -> candle_core::Result<()> {
            let taps = [TowerTap::Head];
            let features = if composed {
                tower.tap_features_composed(&images, &taps)?
            } else {
                tower.tap_features(&images, &taps)?
            };
            features[0].to_vec2::<f32>().map(|_| ())
        };
        let phase = crate::progress::Phase::start(
            &format!("bench tower {name}"),
            args.batches as u64 + 1,
            "batches",
        );
        run()?;
        phase.advance(1);
        let started = Instant::now();
        for _ in 0..args.batches {
            run()?;
            phase.advance(1);
        }
        phase.finish();
        let seconds = started.elapsed().as_secs_f64();
        let rate = (args.batch * args.batches) as f64 / seconds;
        rates.push(rate);
        report.result(
            format!(
                "{name:<22} {rate:>8.2} images/s ({:.1} ms/batch)",
                1000.0 * seconds / args.batches as f64
            ),
            json!({"path": name, "images_per_second": rate, "batch": args.batch, "side": args.side}),
        );
    }
    if let [fast, composed] = rates[..] {
        report.result(
            format!(
                "speed-up of the channels-last kernels: {:.2}×",
                fast / composed
            ),
            json!({"speedup": fast / composed}),
        );
    }
    report.finish()
}
