//! Private backends for fault-injection tests: a RabbitMQ node and a Redis server of the test's
//! own, on free loopback ports and temporary folders, that a test may stop and restart without
//! disturbing the other tests sharing the machine's broker and Redis. Both keep their data across
//! a restart (RabbitMQ's quorum queues on disk, Redis with its append-only file), as production
//! deployments do.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{unique, wait_until};

/// A free TCP port on loopback (free when asked; the caller binds it soon after).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn run(program: &str, args: &[&str], envs: &[(&str, String)]) -> Result<String> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program} (is it installed on this machine?)"))?;
    if !output.status.success() {
        bail!(
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A RabbitMQ node of the test's own (`rabbitmq-server` on a free port, no plugins). Stopped when
/// dropped.
pub struct PrivateRabbit {
    /// The node's Erlang name (`suti-…@localhost`).
    pub node: String,
    /// The AMQP port.
    pub port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRabbit {
    /// Starts a node and waits until it accepts connections.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let rabbit = Self {
            node: format!("{}@localhost", unique("suti")),
            port: free_port()?,
            dist_port: free_port()?,
            dir,
        };
        std::fs::write(
            rabbit.dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{}\n", rabbit.port),
        )?;
        std::fs::write(rabbit.dir.path().join("enabled_plugins"), "[].\n")?;
        // rabbitmq-server drops to the `rabbitmq` user when started as root: that user must own
        // the node's folder. (As another user this fails harmlessly and the folder is ours.)
        let _ = std::process::Command::new("chown")
            .args(["-R", "rabbitmq"])
            .arg(rabbit.dir.path())
            .stderr(Stdio::null())
            .status();
        rabbit.boot().await?;
        Ok(rabbit)
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let dir = self.dir.path();
        let path = |name: &str| dir.join(name).display().to_string();
        vec![
            ("RABBITMQ_NODENAME", self.node.clone()),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
        ]
    }

    async fn boot(&self) -> Result<()> {
        run("rabbitmq-server", &["-detached"], &self.env()).await?;
        let port = self.port;
        wait_until(
            Duration::from_secs(90),
            "the private RabbitMQ node to listen",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await
        .with_context(|| format!("node log folder: {}", self.dir.path().join("log").display()))?;
        run(
            "rabbitmqctl",
            &["-n", &self.node, "await_startup", "--timeout", "60"],
            &[],
        )
        .await?;
        Ok(())
    }

    /// Stops the whole node (the Erlang VM), as a restart of the broker's host would.
    pub async fn stop(&self) -> Result<()> {
        run("rabbitmqctl", &["-n", &self.node, "stop"], &[]).await?;
        Ok(())
    }

    /// Starts a node stopped with [`PrivateRabbit::stop`] again, on the same port with the same
    /// data.
    pub async fn start_again(&self) -> Result<()> {
        self.boot().await
    }

    /// Messages in `queue` (ready and unacknowledged), read with `rabbitmqctl`.
    pub async fn queue_messages(&self, queue: &str) -> Result<u64> {
        let listing = run(
            "rabbitmqctl",
            &[
                "-n",
                &self.node,
                "list_queues",
                "name",
                "messages",
                "--quiet",
                "--no-table-headers",
            ],
            &[],
        )
        .await?;
        Ok(listing
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next()? == queue).then(|| parts.next()?.parse().ok())?
            })
            .next()
            .unwrap_or(0))
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A Redis server of the test's own, with its append-only file on, so that a restart keeps the
/// state as a production Redis with persistence does. Stopped when dropped.
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts a server and waits until it answers.
    pub async fn start() -> Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            dir: tempfile::tempdir()?,
            child: None,
        };
        redis.boot().await?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn boot(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))?;
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        let port = self.port;
        wait_until(
            Duration::from_secs(30),
            "the private Redis to answer",
            || ping(port),
        )
        .await
    }

    /// Stops the server (SIGTERM: it flushes its append-only file) and starts it again on the same
    /// port with the same data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.boot().await
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            if child.wait().is_err() {
                let _ = child.kill();
            }
        }
    }

    /// The folder holding its data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Redis server answers PING on `port`.
async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer)).await,
        Ok(Ok(_))
    ) && &answer == b"+PONG\r\n"
}
