//! OTLP trace export: with `telemetry.otlp_endpoint` set, spans reach an OTLP/HTTP receiver as
//! protobuf, named by service, and a span continued from a message's `traceparent` is the child
//! of the span that published it — the link that joins a run's stages into one trace. (No
//! OpenTelemetry Collector can be installed on this project's machines; the receiver here decodes
//! the requests with the protocol's own message types.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use suti_runtime::SutiConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_and_linked_across_the_queue() {
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                sink.lock().unwrap().push(request);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = SutiConfig::defaults().clone();
    config.telemetry.otlp_endpoint = format!("http://{addr}");
    let mut problems = Vec::new();
    config.telemetry.validate(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    suti_runtime::init_telemetry(&config.telemetry, "generator");

    // A publisher's span, and the traceparent its message carries.
    let publisher = tracing::info_span!("experts publish", otel.name = "expert-finetuner handle");
    let traceparent =
        suti_runtime::traceparent_of(&publisher).expect("a traceparent while exporting");
    drop(publisher);
    // The consumer continues the trace from the message.
    let consumer = tracing::info_span!("handle", otel.name = "generator handle");
    suti_runtime::continue_trace(&consumer, Some(&traceparent));
    let downstream = suti_runtime::traceparent_of(&consumer).expect("a traceparent downstream");
    drop(consumer);
    // A message without a trace starts one of its own; garbage is not a parent.
    let orphan = tracing::info_span!("handle", otel.name = "orphan handle");
    suti_runtime::continue_trace(&orphan, Some("not-a-traceparent"));
    drop(orphan);
    suti_runtime::flush_traces();

    let exported = || {
        received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|rs| {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.clone())
                    .map(|v| format!("{:?}", v.value));
                rs.scope_spans
                    .iter()
                    .flat_map(|ss| ss.spans.iter())
                    .map(move |s| (service.clone(), s.clone()))
            })
            .collect::<Vec<_>>()
    };
    // The flush is asynchronous to the receiver: wait (with a deadline) for all three spans.
    let _ = suti_testkit::wait_until(Duration::from_secs(5), "three exported spans", || {
        let count = exported().len();
        async move { count >= 3 }
    })
    .await;
    let spans = exported();
    let find = |name: &str| {
        spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no span {name:?} among {:?}",
                    spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
                )
            })
            .clone()
    };
    let (service, published) = find("expert-finetuner handle");
    assert!(
        service.unwrap_or_default().contains("generator"),
        "service.name is the process's"
    );
    let (_, handled) = find("generator handle");
    assert_eq!(
        handled.trace_id, published.trace_id,
        "one trace across the queue"
    );
    assert_eq!(
        handled.parent_span_id, published.span_id,
        "the consumer is the publisher's child"
    );
    assert!(traceparent.starts_with("00-") && traceparent.contains(&hex(&published.span_id)));
    assert!(
        downstream.contains(&hex(&handled.span_id))
            && downstream.contains(&hex(&published.trace_id))
    );
    let (_, orphan) = find("orphan handle");
    assert!(
        orphan.parent_span_id.is_empty(),
        "a malformed traceparent is no parent"
    );
    assert_ne!(orphan.trace_id, published.trace_id);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
