//! The fetcher against the synthetic web's hostile resources, served on loopback.

use std::time::Duration;

use crawler_clusterer::fetch::{FetchLimits, Fetcher};
use crawler_clusterer::url_policy::UrlPolicy;
use suti_data::synthweb::{Site, SiteParams, hostile, serve};
use url::Url;

async fn site() -> (suti_data::synthweb::ServedSite, Site) {
    let assets = suti_data::Assets::open_default().expect("scripts/fetch-assets");
    let site = Site::new(
        assets,
        SiteParams {
            subjects: 6,
            huge_bytes: 16 << 20,
            slow_duration: Duration::from_secs(20),
            ..SiteParams::default()
        },
    );
    (serve(site.clone(), "127.0.0.1:0").await.unwrap(), site)
}

fn loopback_fetcher(limits: FetchLimits) -> Fetcher {
    Fetcher::new(UrlPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]), limits).unwrap()
}

#[tokio::test]
async fn pages_and_images_are_fetched_and_hostile_resources_skipped_with_the_right_reason() {
    let (served, site) = site().await;
    let base = Url::parse(&served.base_url()).unwrap();
    let limits = FetchLimits {
        max_bytes: 2 << 20,
        timeout: Duration::from_secs(2),
        ..FetchLimits::default()
    };
    let fetcher = loopback_fetcher(limits);
    let page = site.pages()[0].path();
    let fetched = fetcher
        .fetch(&base.join(&page).unwrap(), &["text/html"])
        .await
        .unwrap();
    assert_eq!(fetched.content_type, "text/html");
    assert!(String::from_utf8_lossy(&fetched.body).contains("<figure>"));
    let image = base
        .join(&format!("/img/{}/0.png", site.pages()[0].subject.id()))
        .unwrap();
    assert_eq!(
        fetcher
            .fetch(&image, &["image/"])
            .await
            .unwrap()
            .content_type,
        "image/png"
    );

    let skip = |path: &'static str, accept: &'static [&'static str]| {
        let fetcher = fetcher.clone();
        let url = base.join(path).unwrap();
        async move { fetcher.fetch(&url, accept).await.unwrap_err() }
    };
    assert_eq!(skip(hostile::HUGE, &["image/"]).await.reason(), "too_large");
    let started = std::time::Instant::now();
    assert_eq!(
        skip(hostile::SLOW, &["text/html"]).await.reason(),
        "timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the slow response was cut off"
    );
    assert_eq!(
        skip(hostile::LOOP_A, &["text/html"]).await.reason(),
        "redirect_loop"
    );
    assert_eq!(
        skip("/s/no-such-page.html", &["text/html"]).await.reason(),
        "http_status"
    );
    assert_eq!(
        skip("/img/logo.png", &["text/html"]).await.reason(),
        "content_type"
    );
}

#[tokio::test]
async fn private_addresses_are_refused_before_any_connection() {
    let (served, _) = site().await;
    // Without the loopback allow-list, the synthetic web itself is a private address.
    let strict = Fetcher::new(UrlPolicy::default(), FetchLimits::default()).unwrap();
    let url = Url::parse(&served.base_url()).unwrap().join("/").unwrap();
    assert_eq!(
        strict
            .fetch(&url, &["text/html"])
            .await
            .unwrap_err()
            .reason(),
        "private_address"
    );
    let by_name = Url::parse(&format!("http://localhost:{}/", served.addr.port())).unwrap();
    assert_eq!(
        strict
            .fetch(&by_name, &["text/html"])
            .await
            .unwrap_err()
            .reason(),
        "private_address"
    );
    for path in ["/", "/robots.txt"] {
        assert!(
            !served.requested().iter().any(|p| p == path),
            "a refused URL reached the server"
        );
    }
    assert!(served.requested().is_empty());
}

#[tokio::test]
async fn robots_frontier_and_rate_are_shared_by_replicas() {
    use crawler_clusterer::politeness::Politeness;
    use std::sync::Arc;
    use suti_state::{InProcessState, SharedState, TokenBucket};

    let (served, site) = site().await;
    let base = Url::parse(&served.base_url()).unwrap();
    let state: SharedState = Arc::new(InProcessState::new());
    let rate = TokenBucket {
        capacity: 1.0,
        refill_per_second: 20.0,
    };
    let a = Politeness::new(
        state.clone(),
        loopback_fetcher(FetchLimits::default()),
        rate,
    );
    let b = Politeness::new(state, loopback_fetcher(FetchLimits::default()), rate);

    // robots.txt: the disallowed area is refused, subject pages allowed; fetched once per origin.
    let private = base.join("/private/draft-0.html").unwrap();
    let page = base.join(&site.pages()[0].path()).unwrap();
    assert!(!a.allowed(&private).await);
    assert!(a.allowed(&page).await);
    assert!(a.allowed(&base.join("/s/other.html").unwrap()).await);
    let robots_fetches = served
        .requested()
        .iter()
        .filter(|p| *p == "/robots.txt")
        .count();
    assert_eq!(robots_fetches, 1, "robots.txt is cached per origin");

    // The frontier: each URL is claimed by exactly one crawl request of the run, whichever
    // replica handles it; the same request claims it again when it is redelivered.
    let mut wins = 0;
    for (p, owner) in [
        (&a, "crawl-x"),
        (&b, "crawl-y"),
        (&a, "crawl-y"),
        (&b, "crawl-z"),
    ] {
        wins += usize::from(p.claim("run-1", owner, &page).await.unwrap());
    }
    assert_eq!(wins, 1);
    assert!(
        b.claim("run-1", "crawl-x", &page).await.unwrap(),
        "a redelivered request (another replica, same message id) claims its URLs again"
    );
    assert!(
        a.claim("run-2", "crawl-y", &page).await.unwrap(),
        "frontiers are per run"
    );

    // The host's rate holds across replicas: 1 token at 20/s means 6 turns take at least 5/20 s.
    let started = std::time::Instant::now();
    for i in 0..6 {
        let p = if i % 2 == 0 { &a } else { &b };
        p.wait_turn(&page).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
}

/// A raw HTTP server for the hostile cases the synthetic web does not serve: redirects to private
/// addresses, an endless body, and headers dripped a byte at a time.
async fn hostile_server() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // On 127.0.0.2, so that `localhost` (127.0.0.1) is another, refused, address.
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..n]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let redirect = |to: &str| {
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                };
                match path.as_str() {
                    "/to-metadata" => {
                        let answer = redirect("http://169.254.169.254/latest/meta-data/");
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    "/to-private" => {
                        let _ = socket
                            .write_all(redirect("http://10.1.2.3/").as_bytes())
                            .await;
                    }
                    "/to-loopback-v6" => {
                        let answer = redirect(&format!("http://[::1]:{}/", addr.port()));
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    "/to-localhost" => {
                        let answer = redirect(&format!("http://localhost:{}/", addr.port()));
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    "/endless" => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        // 0x10000 bytes of data per chunk, for as long as the client reads.
                        let mut chunk = b"10000\r\n".to_vec();
                        chunk.extend(std::iter::repeat_n(b'x', 0x10000));
                        chunk.extend_from_slice(b"\r\n");
                        while socket.write_all(&chunk).await.is_ok() {}
                    }
                    "/drip" => {
                        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Slow: yes"
                            .iter()
                            .cycle()
                        {
                            if socket.write_all(&[*byte]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    _ => {
                        let body = "<html>ok</html>";
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn redirects_to_private_addresses_endless_bodies_and_dripped_headers_are_skipped() {
    let addr = hostile_server().await;
    // Only this server's own address is allowed: every other private address stays refused.
    let fetcher = Fetcher::new(
        UrlPolicy::new(vec![format!("{}/32", addr.ip()).parse().unwrap()]),
        FetchLimits {
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(2),
            ..FetchLimits::default()
        },
    )
    .unwrap();
    let fetch = |path: &str| {
        let fetcher = fetcher.clone();
        let url = Url::parse(&format!("http://{addr}{path}")).unwrap();
        async move { fetcher.fetch(&url, &["text/html"]).await }
    };
    assert!(fetch("/").await.is_ok());
    for path in [
        "/to-metadata",
        "/to-private",
        "/to-loopback-v6",
        "/to-localhost",
    ] {
        let skip = fetch(path).await.unwrap_err();
        assert_eq!(skip.reason(), "private_address", "{path}: {skip}");
    }
    let started = std::time::Instant::now();
    assert_eq!(fetch("/endless").await.unwrap_err().reason(), "too_large");
    assert_eq!(fetch("/drip").await.unwrap_err().reason(), "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the endless body and the dripped headers were cut off ({:?})",
        started.elapsed()
    );
}
