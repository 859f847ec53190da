//! serving's HTTP API on a real socket: every limit and hostile input gets its documented 4xx JSON
//! error; concurrent requests with different demonstrations are batched and each gets exactly
//! the images it gets alone with the same seeds; API keys and their rate limit; the OpenAPI
//! document matches the routes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use candle_core::Device;
use serde_json::{Value, json};
use serving::api::{ApiKeys, ApiState, GenerationOut, OPENAPI, router};
use serving::engine::{
    BatchLimits, Demonstration, Engine, Generation, LoadedModel, ModelSlot, render_batch,
};
use serving::metrics::ServingMetrics;
use suti_data::RgbaImage;
use suti_factory::BaseModel;
use suti_factory::base::untrained_base_model;
use suti_models::DitConfig;
use suti_rng::SplitMix64;
use suti_runtime::config::ServingConfig;
use suti_state::TokenBucket;

/// A small apprentice whose every weight is random (even those that start at zero), so that
/// prompts and demonstrations change its output.
fn random_apprentice() -> BaseModel {
    let mut model = untrained_base_model(&DitConfig::test(), 3, &Device::Cpu).unwrap();
    let mut rng = SplitMix64::new(4);
    // In name order, so every call builds the same model.
    let names: std::collections::BTreeSet<String> = model.tensors.keys().cloned().collect();
    for name in names {
        let t = &model.tensors[&name];
        let noise =
            candle_core::Tensor::from_vec(rng.normals(t.elem_count()), t.shape(), &Device::Cpu)
                .unwrap();
        let noisy = (t + (noise * 0.05).unwrap()).unwrap();
        model.tensors.insert(name, noisy);
    }
    model
}

fn serving_settings() -> ServingConfig {
    ServingConfig {
        max_body_bytes: 256 * 1024,
        max_image_pixels: 256 * 256,
        max_demos: 8,
        max_prompt_chars: 300,
        max_images: 4,
        max_steps: 100,
        default_steps: 4,
        default_guidance: 15.0,
        default_demo_guidance: None,
        request_timeout_secs: 60,
        read_timeout_secs: READ_TIMEOUT.as_secs(),
        ..ServingConfig::default()
    }
}

/// The tests' limit on reading headers and bodies.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

fn text() -> Arc<suti_models::text::TextEncoder> {
    Arc::new(
        suti_factory::towers::load_text_encoder(
            &suti_factory::towers::text_encoder_dir(""),
            &Device::Cpu,
        )
        .unwrap(),
    )
}

struct Server {
    base: String,
    slot: ModelSlot,
    client: reqwest::Client,
}

async fn serve(keys: Option<ApiKeys>, wait: Duration, loaded: bool) -> Server {
    let slot = ModelSlot::default();
    if loaded {
        slot.replace(LoadedModel::from_bundle("r1".into(), &random_apprentice()).unwrap());
    }
    let engine = Engine::start(
        slot.clone(),
        text(),
        BatchLimits {
            max_images: 8,
            wait,
            max_queued: 16,
        },
        ServingMetrics::unregistered(),
    );
    let state = ApiState {
        engine,
        config: Arc::new(serving_settings()),
        keys: keys.map(Arc::new),
        state: Arc::new(suti_state::InProcessState::new()),
        metrics: ServingMetrics::unregistered(),
        examples: Arc::new(serving::api::examples::Examples::templates_only()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serving::http::serve_http(
        listener,
        router(state),
        READ_TIMEOUT,
        tokio_util::sync::CancellationToken::new(),
    ));
    Server {
        base: format!("http://{addr}"),
        slot,
        client: reqwest::Client::new(),
    }
}

fn png(seed: u64, side: u32) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut image = RgbaImage::new(side, side);
    for p in image.pixels.chunks_exact_mut(4) {
        p.copy_from_slice(&[
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
            255,
        ]);
    }
    image.to_png()
}

impl Server {
    async fn post(&self, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/generations", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn post_form(&self, form: reqwest::multipart::Form) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/generations", self.base))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("(no error code)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_and_hostile_input_gets_its_documented_error() {
    let server = serve(None, Duration::from_millis(1), true).await;
    let demo = json!({"image": BASE64.encode(png(1, 16))});
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"prompt": "  "}), 422, "prompt_empty"),
        (json!({"prompt": "x".repeat(301)}), 422, "prompt_too_long"),
        (
            json!({"prompt": "a dog", "demonstrations": vec![demo.clone(); 9]}),
            422,
            "too_many_demonstrations",
        ),
        (
            json!({"prompt": "a dog", "num_images": 5}),
            422,
            "bad_num_images",
        ),
        (
            json!({"prompt": "a dog", "num_images": 0}),
            422,
            "bad_num_images",
        ),
        (json!({"prompt": "a dog", "steps": 101}), 422, "bad_steps"),
        (
            json!({"prompt": "a dog", "guidance": -1.0}),
            422,
            "bad_guidance",
        ),
        (
            json!({"prompt": "a dog", "demo_guidance": 51.0}),
            422,
            "bad_demo_guidance",
        ),
        (
            json!({"prompt": "a dog", "seed": 9_223_372_036_854_775_808_u64}),
            422,
            "bad_seed",
        ),
        (json!({"prompt": "   "}), 422, "prompt_empty"),
        (json!({"prompt": "a dog", "colour": "red"}), 400, "bad_json"),
        (
            json!({"prompt": "a dog", "demonstrations": [{"image": "***"}]}),
            400,
            "bad_base64",
        ),
        (
            json!({"prompt": "a dog", "demonstrations": [{"image": BASE64.encode(&png(2, 16)[..40])}]}),
            400,
            "bad_image",
        ),
        (
            json!({"prompt": "a dog", "demonstrations": [{"image": BASE64.encode(b"GIF89a not a png")}]}),
            400,
            "bad_image",
        ),
        (
            // 300×300 is over the 256×256 pixel limit: refused before its pixels are allocated.
            json!({"prompt": "a dog", "demonstrations": [{"image": BASE64.encode(RgbaImage::new(300, 300).to_png())}]}),
            413,
            "image_too_large",
        ),
        (
            json!({"prompt": "a dog", "demonstrations": [{"image": "A".repeat(300 * 1024)}]}),
            413,
            "body_too_large",
        ),
    ];
    for (body, status, expected) in cases {
        let (got, answer) = server.post(body.clone()).await;
        let shown: String = body.to_string().chars().take(200).collect();
        assert_eq!((got, code(&answer)), (status, expected), "{shown}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // A decompression bomb: a valid PNG header claiming 60000×60000 pixels.
    // The IHDR chunk is rewritten with a correct CRC, so only the size gives it away.
    let mut bomb = png(4, 8);
    bomb[16..20].copy_from_slice(&60000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    let (status, answer) = server
        .post(json!({"prompt": "a dog", "demonstrations": [{"image": BASE64.encode(&bomb)}]}))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (413, "image_too_large"),
        "{answer}"
    );
    // Wrong content types.
    let plain = server
        .client
        .post(format!("{}/v1/generations", server.base))
        .header("content-type", "text/plain")
        .body("a dog")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 415);
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a dog")
        .part(
            "demonstration",
            reqwest::multipart::Part::bytes(vec![0xff, 0xd8, 0xff])
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let jpeg = server.post_form(form).await;
    assert_eq!(jpeg.status().as_u16(), 415);
    let body: Value = jpeg.json().await.unwrap();
    assert_eq!(code(&body), "unsupported_image_type");
    // A caption with no demonstration to describe (found by schemathesis: it escaped the caption
    // limits by being dropped).
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a dog")
        .text("caption", "x".repeat(400));
    let orphan = server.post_form(form).await;
    assert_eq!(orphan.status().as_u16(), 422);
    assert_eq!(
        code(&orphan.json().await.unwrap()),
        "caption_without_demonstration"
    );
    let missing = server.get("/v2/nothing").await;
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(code(&missing.json().await.unwrap()), "not_found");

    // A well-formed multipart request renders.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a dog on the beach")
        .text("num_images", "2")
        .text("seed", "7")
        .part(
            "demonstration",
            reqwest::multipart::Part::bytes(png(5, 32))
                .mime_str("image/png")
                .unwrap(),
        )
        .text("caption", "my dog");
    let ok = server.post_form(form).await;
    assert_eq!(ok.status().as_u16(), 200);
    let out: GenerationOut = ok.json().await.unwrap();
    assert_eq!(out.model, "r1");
    assert_eq!(
        out.images.iter().map(|i| i.seed).collect::<Vec<_>>(),
        vec![7, 8]
    );
    let image = RgbaImage::from_png(&BASE64.decode(&out.images[0].png_base64).unwrap()).unwrap();
    assert_eq!((image.width, image.height), (16, 16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_release_the_api_says_so() {
    let server = serve(None, Duration::from_millis(1), false).await;
    let (status, body) = server.post(json!({"prompt": "a dog"})).await;
    assert_eq!((status, code(&body)), (503, "no_model"));
    let models = server.get("/v1/models").await;
    assert_eq!(models.status().as_u16(), 503);
    // Hot reload: a release swapped in is served by the next request.
    server
        .slot
        .replace(LoadedModel::from_bundle("r2".into(), &random_apprentice()).unwrap());
    let (status, body) = server.post(json!({"prompt": "a dog", "steps": 2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "r2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_required_checked_and_rate_limited() {
    let key = "s3cret-key";
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()).into();
    let keys = ApiKeys {
        hashes: vec![digest],
        rate: TokenBucket {
            capacity: 2.0,
            refill_per_second: 0.01,
        },
    };
    let server = serve(Some(keys), Duration::from_millis(1), true).await;
    let url = format!("{}/v1/generations", server.base);
    let body = json!({"prompt": "a dog", "steps": 1});
    let send = |auth: Option<&'static str>| {
        let mut request = server.client.post(&url).json(&body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    let none = send(None).await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(code(&none.json().await.unwrap()), "missing_api_key");
    let wrong = send(Some("Bearer nope")).await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(code(&wrong.json().await.unwrap()), "invalid_api_key");
    for _ in 0..2 {
        assert_eq!(
            send(Some("Bearer s3cret-key"))
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    let limited = send(Some("Bearer s3cret-key")).await.unwrap();
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(code(&limited.json().await.unwrap()), "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched_and_each_gets_its_own_images() {
    // A long batching window, so the first three requests share one batch; the fourth guides
    // its demonstrations separately, so it is denoised on its own.
    let server = serve(None, Duration::from_millis(400), true).await;
    let requests = [
        json!({"prompt": "a dog on the beach", "seed": 11, "num_images": 2, "steps": 4,
               "demonstrations": [{"image": BASE64.encode(png(21, 16)), "caption": "my dog"}]}),
        json!({"prompt": "a cat in the snow", "seed": 12, "steps": 4,
               "demonstrations": [{"image": BASE64.encode(png(22, 24))}, {"image": BASE64.encode(png(23, 16))}]}),
        json!({"prompt": "a teapot", "seed": 13, "steps": 4}),
        json!({"prompt": "a dog on the beach", "seed": 11, "num_images": 2, "steps": 4,
               "demo_guidance": 3.0,
               "demonstrations": [{"image": BASE64.encode(png(21, 16)), "caption": "my dog"}]}),
    ];
    let answers = futures::future::join_all(requests.iter().map(|r| server.post(r.clone()))).await;
    let model = LoadedModel::from_bundle("r1".into(), &random_apprentice()).unwrap();
    let text = text();
    let mut outputs = Vec::new();
    for ((status, body), request) in answers.iter().zip(&requests) {
        assert_eq!(*status, 200, "{body}");
        let out: GenerationOut = serde_json::from_value(body.clone()).unwrap();
        let demo_guidance = request["demo_guidance"].as_f64().map(|g| g as f32);
        let company = if demo_guidance.is_some() { 1 } else { 3 };
        assert_eq!(
            out.batched_with, company,
            "requests alike are denoised together"
        );
        // The same request alone, same seeds.
        let demonstrations = request["demonstrations"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|d| Demonstration {
                        image: RgbaImage::from_png(
                            &BASE64.decode(d["image"].as_str().unwrap()).unwrap(),
                        )
                        .unwrap(),
                        caption: d["caption"]
                            .as_str()
                            .unwrap_or(serving::api::DEFAULT_CAPTION)
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let alone = Generation {
            prompt: request["prompt"].as_str().unwrap().to_string(),
            demonstrations,
            seeds: out.images.iter().map(|i| i.seed).collect(),
            steps: 4,
            guidance: 15.0,
            demo_guidance,
        };
        let expected = render_batch(&model, &text, &[&alone]).unwrap().remove(0);
        for (got, want) in out.images.iter().zip(&expected) {
            let got = RgbaImage::from_png(&BASE64.decode(&got.png_base64).unwrap()).unwrap();
            let worst = got
                .pixels
                .iter()
                .zip(&want.pixels)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 2, "batched and alone differ by {worst} levels");
        }
        outputs.push(out);
    }
    assert_ne!(
        outputs[0].images[0].png_base64, outputs[1].images[0].png_base64,
        "different requests get different images"
    );
    assert_ne!(
        outputs[0].images[0].png_base64, outputs[3].images[0].png_base64,
        "the demonstrations' own guidance weight changes the image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let server = serve(None, Duration::from_millis(1), true).await;
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let served: Value = server.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(served, doc);
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![
            "/",
            "/openapi.json",
            "/report/",
            "/v1/examples",
            "/v1/generations",
            "/v1/models",
            "/v1/settings"
        ],
        "every route is documented, and nothing else"
    );
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let request = match method.as_str() {
                "get" => server.client.get(format!("{}{path}", server.base)),
                "post" => server
                    .client
                    .post(format!("{}{path}", server.base))
                    .json(&json!({"prompt": "a dog", "steps": 1})),
                other => panic!("undocumented method {other}"),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16().to_string();
            assert!(
                methods[method]["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which the document does not list"
            );
            if path.starts_with("/v1/") {
                let body: Value = response.json().await.unwrap();
                let schema = &methods[method]["responses"][&status]["content"]["application/json"]
                    ["schema"]["$ref"];
                let name = schema.as_str().unwrap().rsplit('/').next().unwrap();
                for field in doc["components"]["schemas"][name]["required"]
                    .as_array()
                    .unwrap()
                {
                    assert!(
                        body.get(field.as_str().unwrap()).is_some(),
                        "{path}: {field} missing"
                    );
                }
            }
        }
    }
    // Every error code the document promises for generations is one the API can give.
    let documented: Vec<&str> = paths["/v1/generations"]["post"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for status in [
        "200", "400", "401", "413", "415", "422", "429", "503", "504",
    ] {
        assert!(documented.contains(&status), "{status} is not documented");
    }
}

/// Slow clients (slowloris) are cut off: headers dripped a byte at a time lose their connection,
/// and a body that stops arriving gets 408 `body_timeout`, each within the read limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = serve(None, Duration::from_millis(5), true).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    let started = std::time::Instant::now();
    let mut drip = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = b"POST /v1/generations HTTP/1.1\r\nHost: suti\r\nX-Slow: ";
    let mut closed = false;
    for byte in head.iter().chain(std::iter::repeat_n(&b'a', 100)) {
        if drip.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), drip.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            // A 408 answer before closing is fine too.
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    assert!(closed, "the dripping client kept its connection");
    assert!(
        started.elapsed() < READ_TIMEOUT + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /v1/generations HTTP/1.1\r\nHost: suti\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\": ",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        started.elapsed() < READ_TIMEOUT + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// The engine serves a repeated reference set from the demonstration cache (the metrics count the
/// hit) with the images a fresh encoding gives, and a new release empties the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_reference_set_hits_the_cache_and_a_new_release_empties_it() {
    let slot = ModelSlot::with_demo_cache(64 << 20);
    slot.replace(LoadedModel::from_bundle("r1".into(), &random_apprentice()).unwrap());
    let registry = prometheus::Registry::new();
    let engine = Engine::start(
        slot.clone(),
        text(),
        BatchLimits {
            max_images: 8,
            wait: Duration::from_millis(1),
            max_queued: 8,
        },
        ServingMetrics::register(&registry).unwrap(),
    );
    let request = Generation {
        prompt: "a photo of it in the snow".into(),
        demonstrations: (0..3)
            .map(|i| Demonstration {
                image: RgbaImage::from_png(&png(i, 24)).unwrap(),
                caption: "my teapot".into(),
            })
            .collect(),
        seeds: vec![5, 6],
        steps: 3,
        guidance: 5.0,
        demo_guidance: None,
    };
    let first = engine.render(request.clone()).await.unwrap();
    let second = engine.render(request.clone()).await.unwrap();
    for (a, b) in first.images.iter().zip(&second.images) {
        assert_eq!(
            a.pixels, b.pixels,
            "the cached encoding renders the same images"
        );
    }
    let metric = |name: &str| -> f64 {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    };
    assert_eq!(metric("suti_serving_demo_cache_misses_total"), 1.0);
    assert_eq!(metric("suti_serving_demo_cache_hits_total"), 1.0);
    assert_eq!(metric("suti_serving_demo_cache_entries"), 1.0);
    assert!(metric("suti_serving_demo_cache_bytes") > 0.0);
    slot.replace(LoadedModel::from_bundle("r2".into(), &random_apprentice()).unwrap());
    assert!(
        slot.demo_cache().is_empty(),
        "a new release empties the cache"
    );
}
