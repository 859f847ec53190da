//! Configuration layering and validation, secret redaction, and the admin port.

use std::io::Write;

use suti_runtime::config::{QueueBackend, redact_url};
use suti_runtime::{
    ConfigError, ConfigSources, Health, ModelDevice, ServiceName, SutiConfig, TemplateFamily,
    build_info_registry, serve_admin,
};
use tokio_util::sync::CancellationToken;

fn env(vars: &[(&str, &str)]) -> ConfigSources {
    ConfigSources {
        file: None,
        env: Some(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
    }
}

#[test]
fn the_compiled_in_defaults_load_and_validate() {
    let config = SutiConfig::load(&env(&[])).unwrap();
    assert_eq!(config.queue.backend, QueueBackend::Amqp);
    assert_eq!(config.queue.delivery_limit, 5);
    assert_eq!(
        config.stages.expert_finetuner.prefetch, 1,
        "GPU stages take one item at a time"
    );
    assert_eq!(config.serving.default_demo_guidance, None);
    let tuned = SutiConfig::load(&env(&[("SUTI__SERVING__DEFAULT_DEMO_GUIDANCE", "2.5")])).unwrap();
    assert_eq!(tuned.serving.default_demo_guidance, Some(2.5));
    for service in ServiceName::ALL {
        assert_eq!(service.as_str().parse::<ServiceName>().unwrap(), service);
        assert_eq!(
            config.stages.for_service(service).is_some(),
            service.input_queue().is_some()
        );
    }
}

#[test]
fn file_then_environment_override_the_defaults() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "queue:\n  namespace: from-file\n  delivery_limit: 9\nstages:\n  generator:\n    prefetch: 3\n    concurrency: 2").unwrap();
    let config = SutiConfig::load(&ConfigSources {
        file: Some(file.path().to_path_buf()),
        env: Some(vec![("SUTI__QUEUE__NAMESPACE".into(), "from-env".into())]),
    })
    .unwrap();
    assert_eq!(
        config.queue.namespace, "from-env",
        "environment wins over the file"
    );
    assert_eq!(
        config.queue.delivery_limit, 9,
        "the file wins over the defaults"
    );
    assert_eq!(config.stages.generator.prefetch, 3);
    assert_eq!(
        config.stages.generator.handler_timeout_secs, 3600,
        "unset keys keep defaults"
    );
}

#[test]
fn lists_come_from_comma_separated_environment_variables() {
    let config =
        SutiConfig::load(&env(&[("SUTI__CRAWLER__ALLOW_PRIVATE", "127.0.0.0/8,::1")])).unwrap();
    assert_eq!(config.crawler.allow_private, vec!["127.0.0.0/8", "::1"]);
    let families = SutiConfig::load(&env(&[(
        "SUTI__GENERATOR__FAMILIES",
        "recontextualisation,property",
    )]))
    .unwrap();
    assert_eq!(
        families.generator.families,
        [
            TemplateFamily::Recontextualisation,
            TemplateFamily::Property
        ]
    );
}

#[test]
fn the_model_device_is_cpu_unless_told() {
    let load = |vars: &[(&str, &str)]| SutiConfig::load(&env(vars)).unwrap().models.device;
    assert_eq!(load(&[]), ModelDevice::Cpu);
    assert_eq!(
        load(&[("SUTI__MODELS__DEVICE", "cuda")]),
        ModelDevice::Cuda(0)
    );
    assert_eq!(
        load(&[("SUTI__MODELS__DEVICE", "cuda:1")]),
        ModelDevice::Cuda(1)
    );
    assert_eq!(ModelDevice::Cuda(1).to_string(), "cuda:1");
}

#[test]
fn an_unknown_choice_is_refused_with_the_allowed_values_named() {
    for (var, value, refused, allowed) in [
        ("SUTI__CRAWLER__GROUPING", "planet", "planet", "`directory`"),
        (
            "SUTI__GENERATOR__SAMPLER",
            "euler",
            "euler",
            "`dpm_solver2m`",
        ),
        (
            "SUTI__GENERATOR__FAMILIES",
            "recontextualisation,poses",
            "poses",
            "`accessorisation`",
        ),
        (
            "SUTI__CLIP_FILTER__DELTA_REFERENCE",
            "prompts",
            "prompts",
            "`captions`",
        ),
        (
            "SUTI__APPRENTICE__DEMO_ATTENTION",
            "cross",
            "cross",
            "`gated_finetuned`",
        ),
        ("SUTI__TELEMETRY__LOG_FORMAT", "xml", "xml", "`json`"),
        ("SUTI__QUEUE__BACKEND", "kafka", "kafka", "`in_process`"),
        ("SUTI__MODELS__DEVICE", "gpu", "gpu", "`cuda:N`"),
    ] {
        let err = SutiConfig::load(&env(&[(var, value)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{refused:?}")) && err.contains(allowed),
            "{var}: {err}"
        );
    }
}

#[test]
fn unknown_keys_are_rejected_from_files_and_the_environment() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "queue:\n  urll: amqp://typo").unwrap();
    let err = SutiConfig::load(&ConfigSources {
        file: Some(file.path().into()),
        env: Some(vec![]),
    })
    .unwrap_err();
    assert!(err.to_string().contains("urll"), "{err}");
    let err = SutiConfig::load(&env(&[("SUTI__STATE__NAMESPAEC", "x")])).unwrap_err();
    assert!(err.to_string().contains("namespaec"), "{err}");
    let err = SutiConfig::load(&ConfigSources {
        file: Some("/no/such/file.yaml".into()),
        env: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn invalid_values_are_all_reported_together() {
    let err = SutiConfig::load(&env(&[
        ("SUTI__QUEUE__URL", "http://wrong"),
        ("SUTI__ADMIN__LISTEN", "not-an-address"),
        ("SUTI__STAGES__CLIP_FILTER__PREFETCH", "0"),
        ("SUTI__SERVING__DEFAULT_DEMO_GUIDANCE", "99"),
        ("SUTI__APPRENTICE__GENERIC_NOUN_SHARE", "1.5"),
    ]))
    .unwrap_err();
    let ConfigError::Invalid(problems) = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 6, "{problems:?}");
    let text = err.to_string();
    assert!(text.contains("default_demo_guidance"));
    assert!(text.contains("queue.url"));
    assert!(text.contains("admin.listen"));
    assert!(text.contains("stages.clip_filter.prefetch"));
    assert!(text.contains("apprentice.generic_noun_share"));
}

#[test]
fn secrets_are_redacted_when_printed() {
    let config = SutiConfig::load(&env(&[
        ("SUTI__QUEUE__URL", "amqp://suti:hunter2@rabbit:5672/%2f"),
        ("SUTI__STATE__URL", "redis://:s3cret@redis:6379/0"),
    ]))
    .unwrap();
    assert_eq!(
        config.queue.url.expose(),
        "amqp://suti:hunter2@rabbit:5672/%2f"
    );
    let yaml = config.to_redacted_yaml();
    let debug = format!("{config:?}");
    for shown in [&yaml, &debug] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
    assert!(yaml.contains("amqp://suti:***@rabbit:5672/%2f"), "{yaml}");
    assert_eq!(
        redact_url("redis://127.0.0.1:6379/"),
        "redis://127.0.0.1:6379/"
    );
    assert_eq!(redact_url("amqp://token@host/"), "amqp://***@host/");
}

#[tokio::test]
async fn the_admin_port_serves_metrics_liveness_and_readiness() {
    let registry = build_info_registry("generator");
    let health = Health::new();
    let shutdown = CancellationToken::new();
    let server_registry = registry.clone();
    let server = serve_admin("127.0.0.1:0", registry, health.clone(), shutdown.clone())
        .await
        .unwrap();

    let (status, body) = suti_testkit::http_get(server.addr, "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("suti_build_info{"), "{body}");
    assert!(body.contains("suti_process_start_time_seconds "), "{body}");
    assert!(body.contains("service=\"generator\""), "{body}");

    let (status, _) = suti_testkit::http_get(server.addr, "/health/livez")
        .await
        .unwrap();
    assert_eq!(status, 200);

    // Ready while every check passes; a failing check makes it 503 and names the failure.
    health.add_check("broker", || Box::pin(async { Ok(()) }));
    let (status, body) = suti_testkit::http_get(server.addr, "/health/readyz")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    health.add_check("storage", || {
        Box::pin(async { Err("bucket unreachable".to_string()) })
    });
    let (status, body) = suti_testkit::http_get(server.addr, "/health/readyz")
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("bucket unreachable"), "{body}");
    // The same answer reaches Prometheus: each scrape runs the checks.
    let (_, metrics) = suti_testkit::http_get(server.addr, "/metrics")
        .await
        .unwrap();
    assert!(metrics.contains("\nsuti_ready 0\n"), "{metrics}");
    assert!(
        metrics.contains("suti_readiness_check_ok{check=\"storage\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("suti_readiness_check_ok{check=\"broker\"} 1"),
        "{metrics}"
    );
    health.add_check("storage", || Box::pin(async { Ok(()) }));
    health.set_flag("model", Some("no model loaded yet".into()));
    let (status, body) = suti_testkit::http_get(server.addr, "/health/readyz")
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("no model loaded yet"), "{body}");
    health.set_flag("model", None);
    let (status, _) = suti_testkit::http_get(server.addr, "/health/readyz")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, metrics) = suti_testkit::http_get(server.addr, "/metrics")
        .await
        .unwrap();
    assert!(metrics.contains("\nsuti_ready 1\n"), "{metrics}");
    assert!(
        metrics.contains("suti_readiness_check_ok{check=\"model\"} 1"),
        "{metrics}"
    );
    // One admin server per registry: a second would export a second readiness answer.
    let second = serve_admin(
        "127.0.0.1:0",
        server_registry,
        Health::new(),
        shutdown.clone(),
    )
    .await;
    assert!(second.is_err());

    let (status, body) = suti_testkit::http_get(server.addr, "/nope").await.unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("not_found"));

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn amqp_backends_connect_from_configuration_and_report_ready() {
    let namespace = suti_testkit::unique("t");
    let config = SutiConfig::load(&env(&[
        ("SUTI__QUEUE__URL", &suti_testkit::amqp_url()),
        ("SUTI__QUEUE__NAMESPACE", &namespace),
        ("SUTI__STATE__URL", &suti_testkit::redis_url()),
        ("SUTI__STATE__NAMESPACE", &namespace),
        ("SUTI__STORAGE__BACKEND", "local"),
    ]))
    .unwrap();
    let mut config = config;
    let dir = tempfile::tempdir().unwrap();
    config.storage.local_root = dir.path().to_path_buf();
    let registry = build_info_registry("clip-filter");
    let health = Health::new();
    let backends = suti_runtime::Backends::connect(&config, "runtime-test", &registry, &health)
        .await
        .unwrap();
    let _cleanup = suti_testkit::TopologyGuard::new(&backends.topology);
    let report = health.report().await;
    assert!(report.ready, "{report:?}");
    assert_eq!(report.checks.len(), 3);
    backends.broker.delete(&backends.topology).await.unwrap();
}
