//! The connection one broker handle shares: its options, opening it, renewing it (or only its
//! publishing channel) when it fails, and closing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::{Backoff, QueueError, redact_url};

/// How to reach RabbitMQ and how hard to try. Its `Debug` hides the URL's password.
#[derive(Clone)]
pub struct AmqpOptions {
    /// `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// Name shown for the connection in the management UI.
    pub connection_name: String,
    /// Backoff between reconnect attempts.
    pub reconnect: Backoff,
    /// Attempts a publish makes (reconnecting in between) before it reports the broker unavailable.
    pub publish_attempts: u32,
    /// Limit on opening one connection.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for AmqpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpOptions")
            .field("url", &redact_url(&self.url))
            .field("connection_name", &self.connection_name)
            .field("reconnect", &self.reconnect)
            .field("publish_attempts", &self.publish_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl AmqpOptions {
    /// Options with production defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connection_name: "suti".into(),
            reconnect: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            publish_attempts: 8,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens a channel in confirm mode for publishing.
async fn open_publisher(connection: &Connection) -> Result<Channel, QueueError> {
    let publisher = connection.create_channel().await.map_err(unavailable)?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(unavailable)?;
    Ok(publisher)
}

/// A live connection with its confirm-mode publishing channel.
pub(super) struct Live {
    connection: Arc<Connection>,
    /// The channel publishes go through, in confirm mode.
    pub(super) publisher: Channel,
}

impl Live {
    fn is_usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

struct Inner {
    options: AmqpOptions,
    live: Mutex<Option<Arc<Live>>>,
    closed: AtomicBool,
}

/// A RabbitMQ connection shared by every publisher and consumer of one handle. Clones share it.
#[derive(Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("AmqpBroker")
            .field("connection_name", &self.inner.options.connection_name)
            .finish()
    }
}

/// A lapin failure as the queue's error: the broker cannot be used now.
pub(super) fn unavailable(err: lapin::Error) -> QueueError {
    QueueError::Unavailable(err.to_string())
}

impl AmqpBroker {
    /// Connects to RabbitMQ (failing fast if it cannot be reached now).
    pub async fn connect(options: AmqpOptions) -> Result<Self, QueueError> {
        if !(options.url.starts_with("amqp://") || options.url.starts_with("amqps://")) {
            return Err(QueueError::Config(
                "the broker URL must start with amqp:// or amqps://".into(),
            ));
        }
        let broker = Self {
            inner: Arc::new(Inner {
                options,
                live: Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        };
        broker.live().await?;
        Ok(broker)
    }

    /// How this handle reaches the broker.
    pub(super) fn options(&self) -> &AmqpOptions {
        &self.inner.options
    }

    /// Whether [`Self::close_connection`] ran: nothing reconnects after it.
    pub(super) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The current connection, reconnecting once if it is gone. A connection that is up but whose
    /// publishing channel was closed by a channel-level error keeps the connection and gets a new
    /// channel.
    pub(super) async fn live(&self) -> Result<Arc<Live>, QueueError> {
        if self.is_closed() {
            return Err(QueueError::Unavailable("connection closed".into()));
        }
        let mut slot = self.inner.live.lock().await;
        if let Some(live) = slot.as_ref() {
            if live.is_usable() {
                return Ok(live.clone());
            }
            if live.connection.status().connected()
                && let Ok(publisher) = open_publisher(&live.connection).await
            {
                let live = Arc::new(Live {
                    connection: live.connection.clone(),
                    publisher,
                });
                *slot = Some(live.clone());
                return Ok(live);
            }
        }
        let options = &self.inner.options;
        let properties = ConnectionProperties::default()
            .with_connection_name(options.connection_name.as_str().into());
        let connection = tokio::time::timeout(
            options.connect_timeout,
            Connection::connect(&options.url, properties),
        )
        .await
        .map_err(|_| QueueError::Unavailable("timed out connecting to the broker".into()))?
        .map_err(unavailable)?;
        let publisher = open_publisher(&connection).await?;
        debug!(name = %options.connection_name, "connected to the broker");
        let live = Arc::new(Live {
            connection: Arc::new(connection),
            publisher,
        });
        *slot = Some(live.clone());
        Ok(live)
    }

    /// Forgets a connection that failed, so the next call reconnects.
    pub(super) async fn invalidate(&self, failed: &Arc<Live>) {
        let mut slot = self.inner.live.lock().await;
        if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, failed)) {
            *slot = None;
        }
    }

    /// A new channel on the shared connection, reconnecting it if needed: declarations, queries
    /// and consumers each take their own, so that a channel-level error (a passive declare of a
    /// missing queue, say) never closes the shared publishing channel.
    pub(super) async fn open_channel(&self) -> Result<Channel, QueueError> {
        let live = self.live().await?;
        match live.connection.create_channel().await {
            Ok(channel) => Ok(channel),
            Err(err) => {
                self.invalidate(&live).await;
                Err(unavailable(err))
            }
        }
    }

    /// Marks the handle closed and closes its connection, waiting at most the connect timeout.
    pub(super) async fn close_connection(&self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(live) = self.inner.live.lock().await.take() {
            // A broker that stopped answering must not keep a process from exiting: the socket is
            // dropped with the connection either way.
            let deadline = self.inner.options.connect_timeout;
            let closing = live.connection.close(200, "closing".into());
            if tokio::time::timeout(deadline, closing).await.is_err() {
                warn!(
                    ?deadline,
                    "the broker did not confirm closing the connection; dropping it"
                );
            }
        }
    }
}

#[cfg(test)]
mod debug_output {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!(
            "{:?}",
            AmqpOptions::new("amqp://suti:hunter2@rabbit:5672/%2f")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("amqp://suti:***@rabbit:5672/%2f"), "{shown}");
    }
}
