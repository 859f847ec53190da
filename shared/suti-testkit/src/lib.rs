//! Test support shared by the workspace's integration tests: the real backends on loopback — the
//! machine's RabbitMQ and Redis, and an S3 server (`s3s-fs`) started in the test process — with
//! unique names so that concurrent runs never collide.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use suti_storage::{S3Options, S3Store};

mod cases;
mod env;
pub mod fuzz;
pub mod private;
pub use env::{backends_env, env_vars, loopback_backends_env};
pub use private::{PrivateRabbit, PrivateRedis, free_port};

/// RabbitMQ URL for tests (`SUTI_TEST_AMQP_URL`, default the machine's broker).
pub fn amqp_url() -> String {
    std::env::var("SUTI_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Redis URL for tests (`SUTI_TEST_REDIS_URL`, default the machine's Redis).
pub fn redis_url() -> String {
    std::env::var("SUTI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A name no other test run uses: `prefix-<12 hex>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Logs to the test's output once per process (`RUST_LOG` filters, default `warn`).
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `rabbitmqctl` with `args` and returns its output (for fault injection in tests).
pub async fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .context("running rabbitmqctl (is RabbitMQ installed on this machine?)")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// An S3 server (s3s-fs) on a loopback port, serving a temporary folder, with its own credentials.
/// It stops when dropped; [`S3Server::suspend`] and [`S3Server::resume`] make an outage.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The access key the server accepts.
    pub access_key: String,
    /// The secret key the server accepts.
    pub secret_key: String,
    /// The folder the server stores buckets in.
    pub root: tempfile::TempDir,
    addr: SocketAddr,
    service: s3s::service::S3Service,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Accepts S3 connections on `listener` until the task is aborted; aborting it also drops every
/// open connection (they live in the task's join set), as a crashed server would.
fn serve_s3(
    listener: tokio::net::TcpListener,
    service: s3s::service::S3Service,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let connection = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            connections.spawn(async move {
                let _ = connection.await;
            });
            while connections.try_join_next().is_some() {}
        }
    })
}

impl S3Server {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?).await
    }

    /// Starts a server on `addr` (a fixed port lets a test restart the server in place).
    pub async fn start_on(addr: SocketAddr) -> Result<Self> {
        let root = tempfile::tempdir()?;
        let access_key = unique("AK").to_uppercase().replace('-', "");
        let secret_key = unique("secret");
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let fs = s3s_fs::FileSystem::new(root.path())
            .map_err(|e| anyhow::anyhow!("s3s-fs cannot serve its root: {e:?}"))?;
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(
                access_key.clone(),
                secret_key.clone(),
            ));
            builder.build()
        };
        let task = serve_s3(listener, service.clone());
        Ok(Self {
            endpoint: format!("http://{addr}"),
            access_key,
            secret_key,
            root,
            addr,
            service,
            task: Some(task),
        })
    }

    /// Stops listening and drops every open connection, keeping the stored objects: clients get
    /// connection refused until [`S3Server::resume`].
    pub fn suspend(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port after [`S3Server::suspend`], with the same objects and
    /// credentials.
    pub async fn resume(&mut self) -> Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        // The aborted task may take a moment to release the port.
        let started = Instant::now();
        loop {
            match socket.bind(self.addr) {
                Ok(()) => break,
                Err(e) if started.elapsed() < Duration::from_secs(5) => {
                    tracing::debug!(error = %e, "S3 port still held; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context("rebinding the S3 server's port"),
            }
        }
        let listener = socket.listen(1024)?;
        self.task = Some(serve_s3(listener, self.service.clone()));
        Ok(())
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Client options for `bucket` on this server with its credentials.
    pub fn options(&self, bucket: &str) -> S3Options {
        S3Options {
            bucket: bucket.to_string(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            path_style: true,
            credentials: suti_storage::S3Credentials::keys(&self.access_key, &self.secret_key),
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_attempts: 2,
        }
    }

    /// The environment that points a suti process's storage at `bucket` on this server, with its
    /// credentials.
    pub fn storage_env(&self, bucket: &str) -> Vec<(String, String)> {
        env_vars([
            ("SUTI__STORAGE__BACKEND", "s3"),
            ("SUTI__STORAGE__ENDPOINT", &self.endpoint),
            ("SUTI__STORAGE__BUCKET", bucket),
            ("AWS_ACCESS_KEY_ID", &self.access_key),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_key),
        ])
    }

    /// A store on a new, unique bucket of this server.
    pub async fn store(&self) -> Result<S3Store> {
        let bucket = unique("bucket");
        Ok(S3Store::connect(&self.options(&bucket), true).await?)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.suspend();
    }
}

/// A plain HTTP/1.1 GET on loopback, returning the status code and the body as text (enough for
/// probing admin endpoints without an HTTP client dependency).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let (status, body) = http_get_bytes(addr, path).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A plain HTTP/1.1 GET on loopback, returning the status code and the raw body. Bodies sent with
/// chunked transfer encoding are de-chunked.
pub async fn http_get_bytes(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("bad chunk")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end])?.trim(), 16)?;
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            out.extend_from_slice(&rest[start..start + size]);
            rest = &rest[start + size + 2..];
        }
        body = out;
    }
    Ok((status, body))
}

/// Deletes a test's broker topology when dropped — also when the test panics — so failed runs
/// leave no queues behind on the shared broker.
pub struct TopologyGuard {
    topology: Option<suti_queue::Topology>,
}

impl TopologyGuard {
    /// Guards `topology` (declared on the broker at [`amqp_url`]).
    pub fn new(topology: &suti_queue::Topology) -> Self {
        Self {
            topology: Some(topology.clone()),
        }
    }
}

/// The pipeline topology of `namespace` declared on the machine's RabbitMQ ([`amqp_url`]): a
/// connection, the topology, and the guard that deletes it when the test ends (keep it bound).
pub async fn declare_pipeline(
    namespace: &str,
    delivery_limit: u32,
) -> Result<(suti_queue::AmqpBroker, suti_queue::Topology, TopologyGuard)> {
    use suti_queue::Broker;
    let topology = suti_queue::Topology::pipeline(namespace, delivery_limit);
    let guard = TopologyGuard::new(&topology);
    let broker = suti_queue::AmqpBroker::connect(suti_queue::AmqpOptions::new(amqp_url())).await?;
    broker.declare(&topology).await?;
    Ok((broker, topology, guard))
}

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        let Some(topology) = self.topology.take() else {
            return;
        };
        // Drop may run inside an async test: do the async clean-up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                use suti_queue::Broker;
                let broker =
                    suti_queue::AmqpBroker::connect(suti_queue::AmqpOptions::new(amqp_url()))
                        .await
                        .ok()?;
                let _ = broker.delete(&topology).await;
                broker.close().await;
                Some(())
            })
        });
        let _ = cleanup.join();
    }
}
