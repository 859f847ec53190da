//! The polite, defensive fetcher (architecture.md §10): every hop of a redirect chain is checked by
//! the address policy — including after DNS resolution, by a resolver that refuses non-public
//! answers, so the connection goes only to addresses that were checked — redirects are capped and
//! loops detected, the content type must be one the caller accepts, and each fetch has a byte cap
//! and a total deadline (a slow-drip response is cut off, not waited out).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::dns::{Name, Resolve, Resolving};
use url::Url;

use crate::url_policy::{Refusal, UrlPolicy};

/// Bounds on one fetch.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// Largest body accepted, bytes.
    pub max_bytes: usize,
    /// Deadline for the whole fetch, redirects and body included.
    pub timeout: Duration,
    /// Limit on opening a connection.
    pub connect_timeout: Duration,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// `User-Agent` sent (and matched against robots.txt).
    pub user_agent: String,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 8 << 20,
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 5,
            user_agent: "suti-crawler/0.1 (+subject clusters for research)".into(),
        }
    }
}

/// Why a fetch was given up; the label is the `reason` of the skip metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchSkip {
    /// The address policy refused a hop.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The body is over the byte cap.
    #[error("body over {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The deadline passed (slow server or slow body).
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// A redirect led back to a URL already visited.
    #[error("redirect loop at {0}")]
    RedirectLoop(String),
    /// More redirects than allowed.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// A redirect without a usable `Location`.
    #[error("bad redirect: {0}")]
    BadRedirect(String),
    /// A non-success status.
    #[error("HTTP {0}")]
    Status(u16),
    /// A content type the caller does not accept.
    #[error("content type {0:?} not accepted")]
    ContentType(String),
    /// The connection failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// Another replica of the run claimed the URL in the shared frontier: it is that one's to
    /// fetch.
    #[error("claimed by another crawl of the run")]
    ClaimedElsewhere,
    /// This crawl already tried the URL (an image on several pages) and skipped it then.
    #[error("already tried by this crawl")]
    AlreadyTried,
    /// robots.txt disallows the URL.
    #[error("disallowed by robots.txt")]
    RobotsDisallowed,
}

impl FetchSkip {
    /// Low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.reason(),
            Self::TooLarge { .. } => "too_large",
            Self::Timeout(_) => "timeout",
            Self::RedirectLoop(_) => "redirect_loop",
            Self::TooManyRedirects(_) => "too_many_redirects",
            Self::BadRedirect(_) => "bad_redirect",
            Self::Status(_) => "http_status",
            Self::ContentType(_) => "content_type",
            Self::Connect(_) => "connect",
            Self::ClaimedElsewhere => "claimed_elsewhere",
            Self::AlreadyTried => "already_tried",
            Self::RobotsDisallowed => "robots_disallowed",
        }
    }
}

/// A successful fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL after redirects.
    pub url: Url,
    /// The content type (lowercased, without parameters).
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// A resolver that returns only addresses the policy allows: the connection can go nowhere else.
struct CheckedResolver {
    policy: UrlPolicy,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            for addr in &addrs {
                policy
                    .check_addr(&host, addr.ip())
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

/// The crawler's HTTP client.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: UrlPolicy,
    limits: FetchLimits,
}

impl Fetcher {
    /// A fetcher under `policy` and `limits`.
    pub fn new(policy: UrlPolicy, limits: FetchLimits) -> Result<Self, FetchSkip> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(limits.connect_timeout)
            .user_agent(limits.user_agent.clone())
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .build()
            .map_err(|e| FetchSkip::Connect(e.to_string()))?;
        Ok(Self {
            client,
            policy,
            limits,
        })
    }

    /// The address policy.
    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// The limits.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// Fetches `url`, following redirects, accepting only content types starting with one of
    /// `accept` (`text/html`, `image/`).
    pub async fn fetch(&self, url: &Url, accept: &[&str]) -> Result<Fetched, FetchSkip> {
        let deadline = self.limits.timeout;
        tokio::time::timeout(deadline, self.fetch_inner(url, accept))
            .await
            .unwrap_or(Err(FetchSkip::Timeout(deadline)))
    }

    async fn fetch_inner(&self, url: &Url, accept: &[&str]) -> Result<Fetched, FetchSkip> {
        let mut current = url.clone();
        let mut visited = HashSet::new();
        for _hop in 0..=self.limits.max_redirects {
            if !visited.insert(current.clone()) {
                return Err(FetchSkip::RedirectLoop(current.to_string()));
            }
            // Checked here for a clear reason (and for IP literals, which skip the resolver).
            self.policy.check(&current).await?;
            let mut response = self
                .client
                .get(current.clone())
                .send()
                .await
                .map_err(|e| connect_error(&e))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| FetchSkip::BadRedirect("no Location".into()))?;
                current = current
                    .join(location)
                    .map_err(|e| FetchSkip::BadRedirect(e.to_string()))?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchSkip::Status(status.as_u16()));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !accept.iter().any(|a| content_type.starts_with(a)) {
                return Err(FetchSkip::ContentType(content_type));
            }
            let limit = self.limits.max_bytes;
            if response
                .content_length()
                .is_some_and(|n| n as usize > limit)
            {
                return Err(FetchSkip::TooLarge { limit });
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| connect_error(&e))? {
                if body.len() + chunk.len() > limit {
                    return Err(FetchSkip::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                url: current,
                content_type,
                body: Bytes::from(body),
            });
        }
        Err(FetchSkip::TooManyRedirects(self.limits.max_redirects))
    }
}

/// Maps a client error, surfacing a refusal from the checked resolver as a refusal.
fn connect_error(e: &reqwest::Error) -> FetchSkip {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return FetchSkip::Refused(refusal.clone());
        }
        source = err.source();
    }
    FetchSkip::Connect(e.to_string())
}
