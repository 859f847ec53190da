//! Diffusion (architecture.md §7.3): the cosine schedule (Nichol & Dhariwal, 2021) in continuous
//! time, v-prediction (Salimans & Ho, 2022), the training loss, and two samplers — DDIM (Song et
//! al., 2021) and the faster multistep DPM-Solver++(2M) (Lu et al., 2022) — with classifier-free
//! guidance and Imagen's dynamic thresholding (Saharia et al., 2022), without which the paper's
//! serving guidance weight of 15 saturates every pixel.
//!
//! All randomness comes from a seeded [`SplitMix64`], so a seed reproduces an image exactly.

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};
use suti_rng::SplitMix64;

use crate::dit::{DemoCache, Dit, EncodedText, TextCond};

/// Offset of the cosine schedule (keeps ᾱ from being exactly 1 at t = 0).
const COSINE_OFFSET: f64 = 0.008;
/// Largest time used, so that α never reaches exactly 0.
pub const T_MAX: f32 = 0.999;

/// Signal and noise scales at time `t` ∈ [0, 1]: `x_t = α·x₀ + σ·ε`.
pub fn alpha_sigma(t: f32) -> (f32, f32) {
    let t = f64::from(t.clamp(0.0, T_MAX));
    let f = |t: f64| {
        ((t + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    let alpha_bar = (f(t) / f(0.0)).clamp(0.0, 1.0);
    (alpha_bar.sqrt() as f32, (1.0 - alpha_bar).sqrt() as f32)
}

fn per_sample(values: &[f32], device: &Device) -> Result<Tensor> {
    Tensor::from_vec(values.to_vec(), (values.len(), 1, 1, 1), device)
}

/// Standard normal noise shaped like `shape`, from `rng`.
pub fn noise(shape: &[usize], rng: &mut SplitMix64, device: &Device) -> Result<Tensor> {
    let n = shape.iter().product();
    Tensor::from_vec(rng.normals(n), shape, device)
}

/// The v-prediction training loss (mean squared error) for clean images `x0` at random times.
pub fn v_loss(
    model: &Dit,
    x0: &Tensor,
    text: &TextCond,
    demos: Option<&DemoCache>,
    rng: &mut SplitMix64,
) -> Result<Tensor> {
    let (b, _, _, _) = x0.dims4()?;
    let device = x0.device();
    let times: Vec<f32> = (0..b).map(|_| rng.unit() * T_MAX).collect();
    let (alphas, sigmas): (Vec<f32>, Vec<f32>) = times.iter().map(|&t| alpha_sigma(t)).unzip();
    let eps = noise(x0.dims(), rng, device)?;
    let (a, s) = (per_sample(&alphas, device)?, per_sample(&sigmas, device)?);
    let x_t = (x0.broadcast_mul(&a)? + eps.broadcast_mul(&s)?)?;
    let v = (eps.broadcast_mul(&a)? - x0.broadcast_mul(&s)?)?;
    let t = Tensor::from_vec(times, b, device)?;
    let pred = model.forward(&x_t, &t, text, demos)?;
    (pred - v)?.sqr()?.mean_all()
}

/// Probabilities of condition dropout during training (SuTI trains the apprentice with text,
/// demonstrations, or both dropped, so that guidance has an unconditional branch to push from).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConditionDropout {
    /// Drop only the text.
    pub text: f32,
    /// Drop only the demonstrations.
    pub demos: f32,
    /// Drop both.
    pub both: f32,
}

impl Default for ConditionDropout {
    fn default() -> Self {
        Self {
            text: 0.1,
            demos: 0.1,
            both: 0.1,
        }
    }
}

/// Applies condition dropout per example: a dropped text has its token mask and pooled vector
/// zeroed; dropped demonstrations have their mask zeroed. Returns the new text mask/pooled and
/// demonstration mask.
pub fn drop_conditions(
    text: &TextCond,
    demo_mask: Option<&Tensor>,
    dropout: ConditionDropout,
    rng: &mut SplitMix64,
) -> Result<(TextCond, Option<Tensor>)> {
    let b = text.pooled.dim(0)?;
    let device = text.pooled.device();
    let (mut keep_text, mut keep_demos) = (vec![1f32; b], vec![1f32; b]);
    for i in 0..b {
        let u = rng.unit();
        if u < dropout.both {
            keep_text[i] = 0.0;
            keep_demos[i] = 0.0;
        } else if u < dropout.both + dropout.text {
            keep_text[i] = 0.0;
        } else if u < dropout.both + dropout.text + dropout.demos {
            keep_demos[i] = 0.0;
        }
    }
    let keep_text = Tensor::from_vec(keep_text, (b, 1), device)?;
    let text = TextCond {
        tokens: text.tokens.clone(),
        mask: text.mask.broadcast_mul(&keep_text)?,
        pooled: text.pooled.broadcast_mul(&keep_text)?,
    };
    let demo_mask = demo_mask
        .map(|m| m.broadcast_mul(&Tensor::from_vec(keep_demos, (b, 1), device)?))
        .transpose()?;
    Ok((text, demo_mask))
}

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Deterministic DDIM.
    Ddim,
    /// DPM-Solver++(2M): second order from the previous step, fewer steps for the same quality.
    DpmSolver2m,
}

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance weight (1 = no guidance; the paper serves with 15).
    pub guidance: f32,
    /// A separate weight for the demonstrations (the apprentice only): the prediction is pushed
    /// from the unconditional branch towards the text by `guidance` and from the text alone
    /// towards text and demonstrations by this weight (InstructPix2Pix's two scales; a third
    /// branch per step unless `guidance` is 1). `None`: one weight for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo_guidance: Option<f32>,
    /// Quantile of |x̂₀| that dynamic thresholding scales by (Imagen: 0.995); 0 disables it.
    pub threshold_quantile: f32,
    /// Which sampler.
    pub kind: SamplerKind,
    /// Seed of the initial noise.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            steps: 25,
            guidance: 15.0,
            demo_guidance: None,
            threshold_quantile: 0.995,
            kind: SamplerKind::DpmSolver2m,
            seed: 0,
        }
    }
}

/// Imagen's dynamic thresholding, per sample: `s = max(quantile(|x̂₀|, q), 1)`, then clip to
/// [−s, s] and divide by s. Keeps guided predictions inside the image range without flattening
/// them to ±1.
pub fn dynamic_threshold(x0: &Tensor, quantile: f32) -> Result<Tensor> {
    if quantile <= 0.0 {
        return x0.clamp(-1f32, 1f32);
    }
    let (b, c, h, w) = x0.dims4()?;
    let per = c * h * w;
    let values = x0.flatten_all()?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(values.len());
    for sample in values.chunks_exact(per) {
        let mut abs: Vec<f32> = sample.iter().map(|v| v.abs()).collect();
        let k = ((quantile * (per - 1) as f32).round() as usize).min(per - 1);
        let (_, kth, _) = abs.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
        let s = kth.max(1.0);
        out.extend(sample.iter().map(|v| v.clamp(-s, s) / s));
    }
    Tensor::from_vec(out, (b, c, h, w), x0.device())
}

/// What to condition on when sampling.
pub struct Conditioning<'a> {
    /// Text of the prompt.
    pub text: &'a TextCond,
    /// Cached demonstrations (apprentice), if any.
    pub demos: Option<&'a DemoCache>,
    /// The unconditional branch (no text, no demonstrations), for guidance.
    pub null_text: &'a TextCond,
}

/// Samples `b` images (the batch size of the conditioning) from noise drawn from `config.seed`;
/// returns them in [-1, 1].
pub fn sample(model: &Dit, cond: &Conditioning<'_>, config: &SamplerConfig) -> Result<Tensor> {
    let cfg = model.config();
    let b = cond.text.pooled.dim(0)?;
    let device = cond.text.pooled.device().clone();
    let mut rng = SplitMix64::derive(config.seed, "sample");
    let shape = [b, cfg.channels, cfg.image_size, cfg.image_size];
    sample_from(model, cond, config, noise(&shape, &mut rng, &device)?)
}

/// Samples one image per seed, batched: image `i` starts from the noise of `seeds[i]`, so it is
/// the image [`sample`] gives alone with `config.seed = seeds[i]` (and the same conditioning row),
/// whatever else shares the batch. `config.seed` is ignored.
pub fn sample_seeded(
    model: &Dit,
    cond: &Conditioning<'_>,
    config: &SamplerConfig,
    seeds: &[u64],
) -> Result<Tensor> {
    let cfg = model.config();
    let b = cond.text.pooled.dim(0)?;
    if seeds.len() != b {
        candle_core::bail!("{} seeds for a batch of {b}", seeds.len());
    }
    let device = cond.text.pooled.device().clone();
    let shape = [1, cfg.channels, cfg.image_size, cfg.image_size];
    let starts = seeds
        .iter()
        .map(|&seed| noise(&shape, &mut SplitMix64::derive(seed, "sample"), &device))
        .collect::<Result<Vec<_>>>()?;
    sample_from(model, cond, config, Tensor::cat(&starts, 0)?)
}

/// Denoises `x` (pure noise at t = 1) down to images.
fn sample_from(
    model: &Dit,
    cond: &Conditioning<'_>,
    config: &SamplerConfig,
    x: Tensor,
) -> Result<Tensor> {
    crate::ops::on_worker(|| denoise(model, cond, config, x))
}

/// The denoising loop of [`sample_from`].
fn denoise(
    model: &Dit,
    cond: &Conditioning<'_>,
    config: &SamplerConfig,
    mut x: Tensor,
) -> Result<Tensor> {
    let device = x.device().clone();
    let steps = config.steps.max(1);
    let times: Vec<f32> = (0..=steps)
        .map(|i| T_MAX * (1.0 - i as f32 / steps as f32))
        .collect();
    let branches = GuidanceBranches::new(cond, config)?;
    // The text's keys and values are the same at every step: encoded once.
    let text = match &branches {
        Some(branches) => model.encode_text(&branches.text)?,
        None => model.encode_text(cond.text)?,
    };
    let mut previous_x0: Option<Tensor> = None;
    let mut previous_h: Option<f32> = None;
    for i in 0..steps {
        let (t, t_next) = (times[i], times[i + 1]);
        let (a, s) = alpha_sigma(t);
        let (a_next, s_next) = if t_next <= 0.0 {
            (1.0, 0.0)
        } else {
            alpha_sigma(t_next)
        };
        let x0 = predict_x0(
            model,
            &x,
            t,
            (a, s),
            (&text, cond.demos),
            branches.as_ref(),
            config,
            &device,
        )?;
        x = match config.kind {
            SamplerKind::Ddim => {
                if s_next == 0.0 {
                    x0.clone()
                } else {
                    let eps = ((&x - (&x0 * f64::from(a))?)? / f64::from(s))?;
                    ((&x0 * f64::from(a_next))? + (eps * f64::from(s_next))?)?
                }
            }
            SamplerKind::DpmSolver2m => {
                if s_next == 0.0 {
                    x0.clone()
                } else {
                    let lambda = (a / s).ln();
                    let lambda_next = (a_next / s_next).ln();
                    let h = lambda_next - lambda;
                    let d = match (&previous_x0, previous_h) {
                        (Some(prev), Some(h_prev)) => {
                            let r = h_prev / h;
                            let c = 1.0 / (2.0 * r);
                            ((&x0 * f64::from(1.0 + c))? - (prev * f64::from(c))?)?
                        }
                        _ => x0.clone(),
                    };
                    previous_h = Some(h);
                    let decay = f64::from(s_next / s);
                    let push = f64::from(-a_next * ((-h).exp() - 1.0));
                    ((&x * decay)? + (d * push)?)?
                }
            }
        };
        previous_x0 = Some(x0);
    }
    x.clamp(-1f32, 1f32)
}

/// The branches of guidance, stacked into one batch so that each step is one forward pass:
/// which conditions each branch sees, and its weight in the combined x̂₀ (the weights sum to 1).
struct GuidanceBranches {
    weights: Vec<f32>,
    text: TextCond,
    demos: Option<DemoCache>,
}

impl GuidanceBranches {
    /// `None` when the full conditioning alone carries all the weight (no guidance).
    fn new(cond: &Conditioning<'_>, config: &SamplerConfig) -> Result<Option<Self>> {
        let g = config.guidance;
        // (sees the text, sees the demonstrations, weight):
        // x̂₀ = u + g·(text − u) + g_d·(text+demos − text), or one weight for both.
        let all: Vec<(bool, bool, f32)> = match (cond.demos, config.demo_guidance) {
            (Some(_), Some(gd)) => vec![
                (true, true, gd),
                (true, false, g - gd),
                (false, false, 1.0 - g),
            ],
            (Some(_), None) => vec![(true, true, g), (false, false, 1.0 - g)],
            (None, _) => vec![(true, false, g), (false, false, 1.0 - g)],
        };
        let kept: Vec<(bool, bool, f32)> = all
            .into_iter()
            .filter(|&(_, _, w)| w.abs() > f32::EPSILON)
            .collect();
        let full = |&(text, demos, _): &(bool, bool, f32)| text && (demos || cond.demos.is_none());
        if kept.len() == 1 && full(&kept[0]) {
            return Ok(None);
        }
        let texts: Vec<&TextCond> = kept
            .iter()
            .map(|&(text, _, _)| if text { cond.text } else { cond.null_text })
            .collect();
        let visible: Vec<bool> = kept.iter().map(|&(_, demos, _)| demos).collect();
        Ok(Some(Self {
            weights: kept.iter().map(|&(_, _, w)| w).collect(),
            text: TextCond::stack(&texts)?,
            demos: cond
                .demos
                .map(|cache| cache.stack_branches(&visible))
                .transpose()?,
        }))
    }
}

/// The guided, thresholded x̂₀ at time `t`; `text` is encoded for the stacked branches when
/// there are branches, for the conditioning alone otherwise.
#[allow(clippy::too_many_arguments)]
fn predict_x0(
    model: &Dit,
    x: &Tensor,
    t: f32,
    (a, s): (f32, f32),
    (text, demos): (&EncodedText, Option<&DemoCache>),
    branches: Option<&GuidanceBranches>,
    config: &SamplerConfig,
    device: &Device,
) -> Result<Tensor> {
    let b = x.dim(0)?;
    let x0 = match branches {
        Some(branches) => {
            let k = branches.weights.len();
            let stacked = Tensor::cat(&vec![x; k], 0)?;
            let t_batch = Tensor::full(t, k * b, device)?.to_dtype(DType::F32)?;
            let v = model.forward_encoded(&stacked, &t_batch, text, branches.demos.as_ref())?;
            let x0 = ((&stacked * f64::from(a))? - (v * f64::from(s))?)?;
            let mut combined = (x0.narrow(0, 0, b)? * f64::from(branches.weights[0]))?;
            for (i, &w) in branches.weights.iter().enumerate().skip(1) {
                combined = (combined + (x0.narrow(0, i * b, b)? * f64::from(w))?)?;
            }
            combined
        }
        None => {
            let t_batch = Tensor::full(t, b, device)?.to_dtype(DType::F32)?;
            let v = model.forward_encoded(x, &t_batch, text, demos)?;
            ((x * f64::from(a))? - (v * f64::from(s))?)?
        }
    };
    dynamic_threshold(&x0, config.threshold_quantile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cosine_schedule_runs_from_signal_to_noise() {
        let (a0, s0) = alpha_sigma(0.0);
        assert!((a0 - 1.0).abs() < 1e-6 && s0 < 1e-3);
        let (a1, s1) = alpha_sigma(1.0);
        assert!(a1 < 0.03 && s1 > 0.99, "{a1} {s1}");
        let mut last = 1.0;
        for i in 1..100 {
            let (a, s) = alpha_sigma(i as f32 / 100.0);
            assert!(a < last, "α falls monotonically");
            assert!((a * a + s * s - 1.0).abs() < 1e-5, "variance preserving");
            last = a;
        }
    }

    #[test]
    fn dynamic_thresholding_keeps_values_in_range_and_leaves_small_ones() {
        let dev = Device::Cpu;
        let small = Tensor::from_vec(vec![0.5f32, -0.25, 0.1, 0.9], (1, 1, 2, 2), &dev).unwrap();
        let out = dynamic_threshold(&small, 0.995).unwrap();
        assert_eq!(
            out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.5, -0.25, 0.1, 0.9]
        );
        let big = Tensor::from_vec(vec![4.0f32, -8.0, 2.0, 1.0], (1, 1, 2, 2), &dev).unwrap();
        let out = dynamic_threshold(&big, 0.995)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(out.iter().all(|v| v.abs() <= 1.0));
        assert_eq!(
            out,
            vec![0.5, -1.0, 0.25, 0.125],
            "scaled by the largest magnitude, not clipped flat"
        );
    }

    #[test]
    fn seeded_batches_give_each_image_its_own_seeds_noise() {
        let dev = Device::Cpu;
        let cfg = crate::DitConfig {
            max_demos: 0,
            depth: 1,
            ..crate::DitConfig::test()
        };
        let varmap = candle_nn::VarMap::new();
        let model = Dit::new(
            &cfg,
            &crate::Builders::base(crate::Params::train(&varmap, 1, &dev)),
        )
        .unwrap();
        let text = TextCond::null(2, cfg.text_dim, &dev).unwrap();
        let null = TextCond::null(2, cfg.text_dim, &dev).unwrap();
        let config = SamplerConfig {
            steps: 3,
            guidance: 1.0,
            ..SamplerConfig::default()
        };
        let cond = Conditioning {
            text: &text,
            demos: None,
            null_text: &null,
        };
        let batched = sample_seeded(&model, &cond, &config, &[11, 12]).unwrap();
        let one_text = TextCond::null(1, cfg.text_dim, &dev).unwrap();
        let one = Conditioning {
            text: &one_text,
            demos: None,
            null_text: &one_text,
        };
        for (i, seed) in [11u64, 12].into_iter().enumerate() {
            let alone = sample(
                &model,
                &one,
                &SamplerConfig {
                    seed,
                    ..config.clone()
                },
            )
            .unwrap();
            let row = batched.narrow(0, i, 1).unwrap();
            let diff = (row - alone).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "image {i}");
        }
        assert!(sample_seeded(&model, &cond, &config, &[1]).is_err());
    }

    #[test]
    fn demonstration_guidance_combines_three_branches() {
        let dev = Device::Cpu;
        let cfg = crate::DitConfig {
            depth: 1,
            ..crate::DitConfig::test()
        };
        let varmap = candle_nn::VarMap::new();
        let model = Dit::new(
            &cfg,
            &crate::Builders::base(crate::Params::train(&varmap, 7, &dev)),
        )
        .unwrap();
        // A fresh model's zero-initialised gates ignore the demonstrations: give every weight a
        // small random value instead.
        for var in varmap.all_vars() {
            let noise = Tensor::randn(0f32, 0.1, var.shape(), &dev).unwrap();
            var.set(&noise).unwrap();
        }
        let (b, d, l) = (2, 3, 5);
        let text = TextCond {
            tokens: Tensor::randn(0f32, 1.0, (b, l, cfg.text_dim), &dev).unwrap(),
            mask: Tensor::ones((b, l), DType::F32, &dev).unwrap(),
            pooled: Tensor::randn(0f32, 0.1, (b, cfg.text_dim), &dev).unwrap(),
        };
        let null = TextCond::null(b, cfg.text_dim, &dev).unwrap();
        let side = cfg.image_size;
        let cache = model
            .encode_demos(&crate::Demos {
                images: Tensor::randn(0f32, 1.0, (b, d, 3, side, side), &dev).unwrap(),
                pooled: Tensor::randn(0f32, 0.1, (b, d, cfg.text_dim), &dev).unwrap(),
                mask: Tensor::ones((b, d), DType::F32, &dev).unwrap(),
            })
            .unwrap();
        // One prediction at mid-noise, thresholding off: the guided x̂₀ against the branches'
        // own x̂₀ computed by hand.
        let t = 0.5f32;
        let (a, s) = alpha_sigma(t);
        let x = Tensor::randn(0f32, 1.0, (b, 3, side, side), &dev).unwrap();
        let guided = |guidance: f32, demo_guidance: Option<f32>| {
            let cond = Conditioning {
                text: &text,
                demos: Some(&cache),
                null_text: &null,
            };
            let config = SamplerConfig {
                guidance,
                demo_guidance,
                threshold_quantile: 0.0,
                ..SamplerConfig::default()
            };
            let branches = GuidanceBranches::new(&cond, &config).unwrap();
            let encoded = match &branches {
                Some(branches) => model.encode_text(&branches.text),
                None => model.encode_text(cond.text),
            }
            .unwrap();
            let x0 = predict_x0(
                &model,
                &x,
                t,
                (a, s),
                (&encoded, cond.demos),
                branches.as_ref(),
                &config,
                &dev,
            );
            (x0.unwrap(), branches.map_or(1, |g| g.weights.len()))
        };
        let branch = |text: &TextCond, demos: Option<&DemoCache>| {
            let times = Tensor::full(t, b, &dev).unwrap();
            let v = model.forward(&x, &times, text, demos).unwrap();
            ((&x * f64::from(a)).unwrap() - (v * f64::from(s)).unwrap()).unwrap()
        };
        let full = branch(&text, Some(&cache));
        let text_only = branch(&text, None);
        let unconditional = branch(&null, None);
        let distance = |p: &Tensor, q: &Tensor| {
            let d = (p - q).unwrap().abs().unwrap().max_all().unwrap();
            d.to_scalar::<f32>().unwrap()
        };
        let demo_effect = distance(&full, &text_only);
        assert!(
            demo_effect > 1e-3,
            "the demonstrations matter: {demo_effect}"
        );

        let (g, gd) = (1.2f32, 1.6f32);
        let expected = ((&full * f64::from(gd)).unwrap()
            + (&text_only * f64::from(g - gd)).unwrap()
            + (&unconditional * f64::from(1.0 - g)).unwrap())
        .unwrap()
        .clamp(-1f32, 1f32)
        .unwrap();
        let (two_scales, passes) = guided(g, Some(gd));
        assert_eq!(passes, 3);
        assert!(distance(&two_scales, &expected) < 1e-5);

        // One weight for both is the two-branch guidance it always was.
        let (single, passes) = guided(g, None);
        assert_eq!(passes, 2);
        let expected_single = ((&full * f64::from(g)).unwrap()
            + (&unconditional * f64::from(1.0 - g)).unwrap())
        .unwrap()
        .clamp(-1f32, 1f32)
        .unwrap();
        assert!(distance(&single, &expected_single) < 1e-5);
        assert_eq!(guided(g, Some(g)).1, 2, "a zero-weight branch is not run");
        assert!(distance(&guided(g, Some(g)).0, &single) < 1e-5);
        // Text unguided: only the text-only and full branches run.
        assert_eq!(guided(1.0, Some(gd)).1, 2);
        // No guidance at all takes the single-branch path.
        let (plain, passes) = guided(1.0, Some(1.0));
        assert_eq!(passes, 1);
        assert!(distance(&plain, &full.clamp(-1f32, 1f32).unwrap()) < 1e-6);
    }
}
