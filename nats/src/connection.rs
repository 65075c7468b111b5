//! Connecting to NATS the way every service here needs: keep retrying, never give up.
//!
//! The first connection is retried in the background (a service starts even while NATS is down
//! and reports not-ready until it is up), reconnects are unlimited, and every change of
//! connection state is logged once.

use async_nats::{Client, ConnectOptions, Event};
use std::time::Duration;

/// Connects to `url` (comma-separated for a cluster) as `name`.
pub async fn connect(url: &str, name: &str) -> Result<Client, async_nats::ConnectError> {
    ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * 2u64.saturating_pow(attempts as u32)).min(2_000))
        })
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("connected to NATS"),
                Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                other => tracing::info!(event = %other, "NATS connection event"),
            }
        })
        .connect(url)
        .await
}
