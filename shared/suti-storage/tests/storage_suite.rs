//! One storage test suite that every backend passes: the local filesystem, and S3 against a real
//! S3 server (s3s-fs) on loopback. Each check is a test of its own per backend
//! (`local::list_by_prefix`, `s3::list_by_prefix`, …) on a fresh store.

use std::sync::Arc;

use bytes::Bytes;
use suti_storage::{LocalStore, ObjectKey, ObjectStore, S3Store, StorageErrorKind, read_pointer};
use suti_testkit::S3Server;

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// Writes `body` at `name`.
async fn put(store: &dyn ObjectStore, name: &str, body: &'static [u8]) {
    store
        .put(&key(name), Bytes::from_static(body))
        .await
        .unwrap();
}

suti_testkit::backend_cases! {
    #[tokio::test]
    backends: [local, s3],
    checks: [
        put_get_head_round_trip,
        overwrite_replaces_the_whole_object,
        missing_objects_are_not_found,
        list_by_prefix,
        delete_removes_exactly_one_object,
        latest_pointer_is_read_trimmed,
        readers_during_overwrites_see_whole_versions,
        the_store_answers_a_ping,
    ],
}

/// A fresh store on one backend, and what keeps it alive.
struct Fixture {
    store: Arc<dyn ObjectStore>,
    /// The local store's folder (local backend only).
    local_root: Option<tempfile::TempDir>,
    _s3: Option<S3Server>,
}

impl Fixture {
    fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    async fn finish(self) {
        if let Some(root) = &self.local_root {
            // Writes in progress live in a hidden folder that listing never shows and that is
            // empty after.
            let tmp: Vec<_> = std::fs::read_dir(root.path().join(".suti-tmp"))
                .unwrap()
                .collect();
            assert!(tmp.is_empty(), "temporary files left behind: {tmp:?}");
        }
    }
}

async fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        store: Arc::new(LocalStore::open(dir.path()).await.unwrap()),
        local_root: Some(dir),
        _s3: None,
    }
}

async fn s3() -> Fixture {
    suti_testkit::init_tracing();
    let server = S3Server::start().await.unwrap();
    Fixture {
        store: Arc::new(server.store().await.unwrap()),
        local_root: None,
        _s3: Some(server),
    }
}

/// put / get / head round trip, including an empty object and a binary one.
async fn put_get_head_round_trip(fixture: &Fixture) {
    let store = fixture.store();
    put(store, "images/a.png", b"alpha").await;
    put(store, "images/empty.bin", b"").await;
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    store
        .put(
            &key("models/base/v1/model.safetensors"),
            Bytes::from(binary.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("images/a.png")).await.unwrap(),
        Bytes::from_static(b"alpha")
    );
    assert_eq!(store.get(&key("images/empty.bin")).await.unwrap().len(), 0);
    assert_eq!(
        store
            .get(&key("models/base/v1/model.safetensors"))
            .await
            .unwrap(),
        binary
    );
    let meta = store
        .head(&key("models/base/v1/model.safetensors"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.size, 300_000);
}

async fn overwrite_replaces_the_whole_object(fixture: &Fixture) {
    let store = fixture.store();
    put(store, "images/a.png", b"alpha").await;
    put(store, "images/a.png", b"beta!").await;
    assert_eq!(
        store.get(&key("images/a.png")).await.unwrap(),
        Bytes::from_static(b"beta!")
    );
}

/// get is NotFound (not retryable), head is None, delete succeeds.
async fn missing_objects_are_not_found(fixture: &Fixture) {
    let store = fixture.store();
    let err = store.get(&key("images/missing.png")).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NotFound, "{err}");
    assert!(!err.is_retryable());
    assert!(
        store
            .head(&key("images/missing.png"))
            .await
            .unwrap()
            .is_none()
    );
    store.delete(&key("images/missing.png")).await.unwrap();
}

/// Writes 25 objects under `clusters/` and one under `clusters-other/`.
async fn put_clusters(store: &dyn ObjectStore) {
    for i in 0..25 {
        store
            .put(
                &key(&format!("clusters/c{i:02}.msgpack")),
                Bytes::from(vec![i as u8; 3]),
            )
            .await
            .unwrap();
    }
    put(store, "clusters-other/x", b"x").await;
}

/// A plain string prefix, sorted, complete across pages.
async fn list_by_prefix(fixture: &Fixture) {
    let store = fixture.store();
    put_clusters(store).await;
    let listed = store.list("clusters/").await.unwrap();
    assert_eq!(listed.len(), 25);
    assert_eq!(listed[0].key.as_str(), "clusters/c00.msgpack");
    assert_eq!(listed[24].key.as_str(), "clusters/c24.msgpack");
    assert!(listed.iter().all(|m| m.size == 3));
    assert_eq!(store.list("clusters/c1").await.unwrap().len(), 10);
    assert_eq!(store.list("clusters").await.unwrap().len(), 26);
    assert!(store.list("nothing/here/").await.unwrap().is_empty());
}

async fn delete_removes_exactly_one_object(fixture: &Fixture) {
    let store = fixture.store();
    put_clusters(store).await;
    store.delete(&key("clusters/c00.msgpack")).await.unwrap();
    assert!(
        store
            .head(&key("clusters/c00.msgpack"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list("clusters/").await.unwrap().len(), 24);
}

/// A LATEST pointer is read trimmed; a missing one is None.
async fn latest_pointer_is_read_trimmed(fixture: &Fixture) {
    let store = fixture.store();
    assert_eq!(
        read_pointer(store, &key("models/base/LATEST"))
            .await
            .unwrap(),
        None
    );
    put(store, "models/base/LATEST", b"v1\n").await;
    assert_eq!(
        read_pointer(store, &key("models/base/LATEST"))
            .await
            .unwrap()
            .as_deref(),
        Some("v1")
    );
}

/// Concurrent readers during overwrites of a large object only ever see a whole version.
async fn readers_during_overwrites_see_whole_versions(fixture: &Fixture) {
    let store = &fixture.store;
    let big_a = Bytes::from(vec![b'a'; 2 << 20]);
    let big_b = Bytes::from(vec![b'b'; 2 << 20]);
    let big = key("models/apprentice/v2/model.safetensors");
    store.put(&big, big_a.clone()).await.unwrap();
    let writer = {
        let store = store.clone();
        let (big, big_a, big_b) = (big.clone(), big_a.clone(), big_b.clone());
        tokio::spawn(async move {
            for i in 0..6 {
                let body = if i % 2 == 0 {
                    big_b.clone()
                } else {
                    big_a.clone()
                };
                store.put(&big, body).await.unwrap();
            }
        })
    };
    for _ in 0..12 {
        // A read racing an overwrite may fail with a retryable error (s3s-fs interrupts the
        // stream); what it must never do is return part of an object.
        let body = match store.get(&big).await {
            Ok(body) => body,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("{e}"),
        };
        assert!(
            body == big_a || body == big_b,
            "a reader saw a partial object ({} bytes)",
            body.len()
        );
    }
    writer.await.unwrap();
}

async fn the_store_answers_a_ping(fixture: &Fixture) {
    fixture.store().ping().await.unwrap();
}

#[tokio::test]
async fn wrong_s3_credentials_give_a_clear_non_retryable_error() {
    let server = S3Server::start().await.unwrap();
    let good = server.store().await.unwrap();
    let mut options = server.options(good.bucket());
    if let suti_storage::S3Credentials::Keys {
        secret_access_key, ..
    } = &mut options.credentials
    {
        *secret_access_key = "not-the-secret".into();
    }
    let store = S3Store::new(&options);
    let err = store
        .put(&key("images/a.png"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Unauthorized, "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("credentials"), "{text}");
    assert!(
        !text.contains("not-the-secret"),
        "the error leaks the secret: {text}"
    );
    let err = S3Store::connect(&options, true).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Unauthorized, "{err}");
}

#[tokio::test]
async fn an_unreachable_s3_server_is_a_retryable_error() {
    // A port nobody listens on.
    let port = suti_testkit::free_port().unwrap();
    let server = S3Server::start().await.unwrap();
    let mut options = server.options("anything");
    options.endpoint = Some(format!("http://127.0.0.1:{port}"));
    options.max_attempts = 1;
    let err = S3Store::new(&options)
        .get(&key("images/a.png"))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(
        err.kind,
        StorageErrorKind::Unavailable | StorageErrorKind::Timeout
    ));
}

#[tokio::test]
async fn a_missing_bucket_is_reported_or_created() {
    let server = S3Server::start().await.unwrap();
    let options = server.options(&suti_testkit::unique("absent"));
    let err = S3Store::connect(&options, false).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NoSuchBucket, "{err}");
    S3Store::connect(&options, true).await.unwrap();
}

#[test]
fn keys_cannot_escape_their_prefix() {
    for bad in [
        "",
        "/abs",
        "a//b",
        "../x",
        "a/../b",
        "a/./b",
        ".hidden",
        "a/.suti-tmp/x",
        "a b",
        "a\\b",
        "a/b/",
        "é",
    ] {
        let err = ObjectKey::new(bad).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::InvalidKey, "{bad:?}");
    }
    assert!(ObjectKey::new("x".repeat(1025)).is_err());
    for good in [
        "images/ab12.png",
        "models/base/v1/model.safetensors",
        "a=b+c@d_e-f.g",
    ] {
        ObjectKey::new(good).unwrap();
    }
    let base = key("experts/c1");
    assert!(base.join("../../etc/passwd").is_err());
    assert_eq!(
        base.join("v1.safetensors").unwrap().as_str(),
        "experts/c1/v1.safetensors"
    );
}
