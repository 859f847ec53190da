//! One state test suite for both backends: the machine's real Redis and the in-process state.

use std::sync::Arc;
use std::time::Duration;

use suti_state::{InProcessState, RateDecision, RedisState, StateStore, TokenBucket};
use suti_testkit::{redis_url, unique};

async fn redis(namespace: &str) -> Arc<dyn StateStore> {
    Arc::new(
        RedisState::connect(&redis_url(), namespace, Duration::from_secs(5))
            .await
            .expect("redis on 127.0.0.1:6379 (see README: running the tests)"),
    )
}

/// `a` and `b` are two replicas' handles on the same shared state.
async fn run_suite(a: Arc<dyn StateStore>, b: Arc<dyn StateStore>) {
    a.ping().await.unwrap();

    // Idempotency marks: exactly one of many concurrent claimants wins, across replicas.
    let mut claims = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        claims.push(tokio::spawn(async move {
            store.mark_if_absent("done:msg-1", None).await.unwrap()
        }));
    }
    let mut winners = 0;
    for claim in claims {
        winners += usize::from(claim.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert!(b.is_marked("done:msg-1").await.unwrap());
    assert!(!a.is_marked("done:msg-2").await.unwrap());
    a.unmark("done:msg-1").await.unwrap();
    assert!(!b.is_marked("done:msg-1").await.unwrap());

    // A mark with a TTL expires.
    assert!(
        a.mark_if_absent("lease", Some(Duration::from_millis(150)))
            .await
            .unwrap()
    );
    assert!(
        !b.mark_if_absent("lease", Some(Duration::from_millis(150)))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.is_marked("lease").await.unwrap());
    assert!(b.mark_if_absent("lease", None).await.unwrap());

    // Counters add up across replicas.
    assert_eq!(a.counter("pages").await.unwrap(), 0);
    assert_eq!(a.incr("pages", 3).await.unwrap(), 3);
    assert_eq!(b.incr("pages", 4).await.unwrap(), 7);
    assert_eq!(a.incr("pages", -2).await.unwrap(), 5);
    assert_eq!(b.counter("pages").await.unwrap(), 5);

    // Set membership (the crawl frontier's seen-set).
    assert!(a.set_add("seen", "http://x/1").await.unwrap());
    assert!(!b.set_add("seen", "http://x/1").await.unwrap());
    assert!(b.set_add("seen", "http://x/2").await.unwrap());
    assert!(a.set_contains("seen", "http://x/2").await.unwrap());
    assert!(!a.set_contains("seen", "http://x/3").await.unwrap());
    assert_eq!(b.set_len("seen").await.unwrap(), 2);
    assert_eq!(b.set_len("never").await.unwrap(), 0);

    // Token bucket shared across replicas: a burst of 5 and almost no refill lets exactly 5 of 20
    // concurrent requests through, whichever replica they arrive at.
    let spec = TokenBucket {
        capacity: 5.0,
        refill_per_second: 0.01,
    };
    let mut takes = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        takes.push(tokio::spawn(async move {
            store
                .take_tokens("host:example.org", spec, 1.0)
                .await
                .unwrap()
        }));
    }
    let mut allowed = 0;
    for take in takes {
        match take.await.unwrap() {
            RateDecision::Allowed => allowed += 1,
            RateDecision::Limited { retry_after } => {
                assert!(retry_after > Duration::from_secs(10), "{retry_after:?}");
            }
        }
    }
    assert_eq!(allowed, 5);

    // A fast refill admits again after the wait it announced.
    let spec = TokenBucket {
        capacity: 1.0,
        refill_per_second: 20.0,
    };
    assert!(
        a.take_tokens("host:fast", spec, 1.0)
            .await
            .unwrap()
            .is_allowed()
    );
    let RateDecision::Limited { retry_after } =
        b.take_tokens("host:fast", spec, 1.0).await.unwrap()
    else {
        panic!("the bucket should be empty");
    };
    assert!(retry_after <= Duration::from_millis(60), "{retry_after:?}");
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert!(
        b.take_tokens("host:fast", spec, 1.0)
            .await
            .unwrap()
            .is_allowed()
    );

    // Clearing the namespace forgets everything.
    a.clear_namespace().await.unwrap();
    assert_eq!(b.counter("pages").await.unwrap(), 0);
    assert_eq!(b.set_len("seen").await.unwrap(), 0);
}

#[tokio::test]
async fn redis_backend_passes_the_suite() {
    let namespace = unique("suti-test");
    let a = redis(&namespace).await;
    let b = redis(&namespace).await;
    run_suite(a.clone(), b).await;
    a.clear_namespace().await.unwrap();
}

#[tokio::test]
async fn in_process_backend_passes_the_suite() {
    let state = InProcessState::new();
    run_suite(Arc::new(state.clone()), Arc::new(state)).await;
}

#[tokio::test]
async fn namespaces_keep_runs_apart() {
    let a = redis(&unique("suti-test")).await;
    let b = redis(&unique("suti-test")).await;
    assert!(a.mark_if_absent("k", None).await.unwrap());
    assert!(b.mark_if_absent("k", None).await.unwrap());
    a.clear_namespace().await.unwrap();
    b.clear_namespace().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_a_retryable_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisState::connect(
        &format!("redis://127.0.0.1:{port}/"),
        "x",
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = RedisState::connect("http://not-redis", "x", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
}

/// Sustained demand is held to the refill rate: 40 tokens at 5 burst + 50/s take ≥ 0.7 s.
async fn sustained_rate(store: Arc<dyn StateStore>) {
    let spec = TokenBucket {
        capacity: 5.0,
        refill_per_second: 50.0,
    };
    let started = std::time::Instant::now();
    let mut granted = 0;
    while granted < 40 {
        match store
            .take_tokens("host:sustained", spec, 1.0)
            .await
            .unwrap()
        {
            RateDecision::Allowed => granted += 1,
            RateDecision::Limited { retry_after } => tokio::time::sleep(retry_after).await,
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(690),
        "40 tokens in {elapsed:?}"
    );
}

#[tokio::test]
async fn redis_rate_holds_under_sustained_demand() {
    let store = redis(&unique("suti-test")).await;
    sustained_rate(store.clone()).await;
    store.clear_namespace().await.unwrap();
}

#[tokio::test]
async fn in_process_rate_holds_under_sustained_demand() {
    sustained_rate(Arc::new(InProcessState::new())).await;
}
