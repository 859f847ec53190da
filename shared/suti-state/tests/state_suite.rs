//! One state test suite for both backends: the machine's real Redis and the in-process state.
//! Each check is a test of its own per backend (`redis::counters_add_up_across_replicas`,
//! `in_process::counters_add_up_across_replicas`, …) on a namespace of its own.

use std::sync::Arc;
use std::time::Duration;

use suti_state::{InProcessState, RateDecision, RedisState, StateStore, TokenBucket};
use suti_testkit::{redis_url, unique};

suti_testkit::backend_cases! {
    #[tokio::test]
    backends: [redis, in_process],
    checks: [
        the_state_answers_a_ping,
        one_of_many_concurrent_claimants_wins_a_mark,
        a_mark_with_a_ttl_expires,
        counters_add_up_across_replicas,
        set_membership,
        a_shared_token_bucket_admits_exactly_its_burst,
        a_fast_refill_admits_again_after_the_announced_wait,
        clearing_the_namespace_forgets_everything,
        the_rate_holds_under_sustained_demand,
    ],
}

async fn connect_redis(namespace: &str) -> Arc<dyn StateStore> {
    Arc::new(
        RedisState::connect(&redis_url(), namespace, Duration::from_secs(5))
            .await
            .expect("redis on 127.0.0.1:6379 (see README: running the tests)"),
    )
}

/// Two replicas' handles, `a` and `b`, on the same shared state.
struct Replicas {
    a: Arc<dyn StateStore>,
    b: Arc<dyn StateStore>,
}

impl Replicas {
    /// One of the two handles by index, alternating, as concurrent requests spread over replicas.
    fn either(&self, i: usize) -> Arc<dyn StateStore> {
        if i.is_multiple_of(2) {
            self.a.clone()
        } else {
            self.b.clone()
        }
    }

    async fn finish(self) {
        self.a.clear_namespace().await.unwrap();
    }
}

async fn redis() -> Replicas {
    let namespace = unique("suti-test");
    Replicas {
        a: connect_redis(&namespace).await,
        b: connect_redis(&namespace).await,
    }
}

async fn in_process() -> Replicas {
    let state = InProcessState::new();
    Replicas {
        a: Arc::new(state.clone()),
        b: Arc::new(state),
    }
}

async fn the_state_answers_a_ping(replicas: &Replicas) {
    replicas.a.ping().await.unwrap();
    replicas.b.ping().await.unwrap();
}

/// Idempotency marks: exactly one of many concurrent claimants wins, across replicas.
async fn one_of_many_concurrent_claimants_wins_a_mark(replicas: &Replicas) {
    let (a, b) = (&replicas.a, &replicas.b);
    let mut claims = Vec::new();
    for i in 0..20 {
        let store = replicas.either(i);
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
}

async fn a_mark_with_a_ttl_expires(replicas: &Replicas) {
    let (a, b) = (&replicas.a, &replicas.b);
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
}

async fn counters_add_up_across_replicas(replicas: &Replicas) {
    let (a, b) = (&replicas.a, &replicas.b);
    assert_eq!(a.counter("pages").await.unwrap(), 0);
    assert_eq!(a.incr("pages", 3).await.unwrap(), 3);
    assert_eq!(b.incr("pages", 4).await.unwrap(), 7);
    assert_eq!(a.incr("pages", -2).await.unwrap(), 5);
    assert_eq!(b.counter("pages").await.unwrap(), 5);
}

/// Set membership (the crawl frontier's seen-set).
async fn set_membership(replicas: &Replicas) {
    let (a, b) = (&replicas.a, &replicas.b);
    assert!(a.set_add("seen", "http://x/1").await.unwrap());
    assert!(!b.set_add("seen", "http://x/1").await.unwrap());
    assert!(b.set_add("seen", "http://x/2").await.unwrap());
    assert!(a.set_contains("seen", "http://x/2").await.unwrap());
    assert!(!a.set_contains("seen", "http://x/3").await.unwrap());
    assert_eq!(b.set_len("seen").await.unwrap(), 2);
    assert_eq!(b.set_len("never").await.unwrap(), 0);
}

/// A burst of 5 and almost no refill lets exactly 5 of 20 concurrent requests through,
/// whichever replica they arrive at.
async fn a_shared_token_bucket_admits_exactly_its_burst(replicas: &Replicas) {
    let spec = TokenBucket {
        capacity: 5.0,
        refill_per_second: 0.01,
    };
    let mut takes = Vec::new();
    for i in 0..20 {
        let store = replicas.either(i);
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
}

async fn a_fast_refill_admits_again_after_the_announced_wait(replicas: &Replicas) {
    let (a, b) = (&replicas.a, &replicas.b);
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
}

async fn clearing_the_namespace_forgets_everything(replicas: &Replicas) {
    let (a, b) = (&replicas.a, &replicas.b);
    a.incr("pages", 3).await.unwrap();
    a.set_add("seen", "http://x/1").await.unwrap();
    assert!(a.mark_if_absent("done:msg-1", None).await.unwrap());
    a.clear_namespace().await.unwrap();
    assert_eq!(b.counter("pages").await.unwrap(), 0);
    assert_eq!(b.set_len("seen").await.unwrap(), 0);
    assert!(!b.is_marked("done:msg-1").await.unwrap());
}

/// Sustained demand is held to the refill rate: 40 tokens at 5 burst + 50/s take ≥ 0.7 s.
async fn the_rate_holds_under_sustained_demand(replicas: &Replicas) {
    let spec = TokenBucket {
        capacity: 5.0,
        refill_per_second: 50.0,
    };
    let started = std::time::Instant::now();
    let mut granted = 0;
    while granted < 40 {
        match replicas
            .a
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
async fn namespaces_keep_runs_apart() {
    let a = connect_redis(&unique("suti-test")).await;
    let b = connect_redis(&unique("suti-test")).await;
    assert!(a.mark_if_absent("k", None).await.unwrap());
    assert!(b.mark_if_absent("k", None).await.unwrap());
    a.clear_namespace().await.unwrap();
    b.clear_namespace().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_a_retryable_error() {
    let port = suti_testkit::free_port().unwrap();
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
