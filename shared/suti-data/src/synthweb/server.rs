//! Serving the synthetic web over HTTP on loopback (`suti synthweb serve`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;

use super::{Site, SiteBody, SiteError, huge_chunk};

/// A running synthetic web server. Dropping it stops the server.
pub struct ServedSite {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every path requested so far, in order (what a test checks a crawler against).
    pub requests: Arc<Mutex<Vec<String>>>,
    /// When each of those requests arrived.
    pub arrivals: Arc<Mutex<Vec<std::time::Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServedSite {
    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The most requests that arrived within any window of `window` (to check a rate limit).
    pub fn peak_requests(&self, window: Duration) -> usize {
        let times = self
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut peak = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) > window {
                start += 1;
            }
            peak = peak.max(end - start + 1);
        }
        peak
    }

    /// The paths requested so far.
    pub fn requested(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ServedSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct AppState {
    site: Site,
    requests: Arc<Mutex<Vec<String>>>,
    arrivals: Arc<Mutex<Vec<std::time::Instant>>>,
}

const CHUNK: usize = 64 << 10;

async fn respond(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.clone());
    state
        .arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(std::time::Instant::now());
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let base = format!("http://{host}");
    let site = state.site.clone();
    // Rendering images is CPU work: keep it off the async workers.
    let answer = tokio::task::spawn_blocking(move || site.respond(&path, &base))
        .await
        .expect("rendering never panics");
    let body = match answer.body {
        SiteBody::Bytes(bytes) => Body::from(bytes),
        SiteBody::Huge { len } => {
            let chunks = futures::stream::iter((0..len).step_by(CHUNK).map(move |offset| {
                Ok::<_, Infallible>(Bytes::from(huge_chunk(offset, CHUNK.min(len - offset))))
            }));
            Body::from_stream(chunks)
        }
        SiteBody::Slow { bytes, over } => {
            let delay = over / bytes.len().max(1) as u32;
            let stream = futures::stream::unfold(0usize, move |i| {
                let bytes = bytes.clone();
                async move {
                    if i >= bytes.len() {
                        return None;
                    }
                    tokio::time::sleep(delay.max(Duration::from_millis(1))).await;
                    Some((Ok::<_, Infallible>(Bytes::from(vec![bytes[i]])), i + 1))
                }
            });
            Body::from_stream(stream)
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Serves `site` on `addr` (port 0 picks a free port) until the returned handle is dropped.
pub async fn serve(site: Site, addr: &str) -> Result<ServedSite, SiteError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SiteError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SiteError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let requests = Arc::new(Mutex::new(Vec::new()));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().fallback(respond).with_state(AppState {
        site,
        requests: requests.clone(),
        arrivals: arrivals.clone(),
    });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "synthetic web server failed");
        }
    });
    Ok(ServedSite {
        addr,
        requests,
        arrivals,
        task,
    })
}
