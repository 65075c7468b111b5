//! A TCP proxy in front of nats-server that loses chosen messages a client publishes, as a
//! reconnect or a slow-consumer drop would: it reads the client's side of the NATS protocol,
//! passes every operation on, and drops the `PUB`/`HPUB`s whose payload a rule picks. The
//! server's side is copied as it is.

use coder_nats::testing::NatsServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Picks the published payloads to lose; called for every `PUB`/`HPUB` in order.
pub type LossRule = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

pub struct LossyProxy {
    pub url: String,
    dropped: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// A proxy to `nats` that loses what `rule` picks.
    pub async fn start(nats: &NatsServer, rule: LossRule) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let upstream = nats.url().trim_start_matches("nats://").to_owned();
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&dropped);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(
                    client,
                    server,
                    Arc::clone(&rule),
                    Arc::clone(&counter),
                ));
            }
        });
        Self { url, dropped, task }
    }

    /// Messages lost so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A rule that loses the first `times` payloads containing every one of `needles`.
pub fn lose_first(times: usize, needles: &'static [&'static str]) -> LossRule {
    let left = AtomicUsize::new(times);
    Arc::new(move |payload: &[u8]| {
        let text = String::from_utf8_lossy(payload);
        needles.iter().all(|needle| text.contains(needle))
            && left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    })
}

async fn relay(client: TcpStream, server: TcpStream, rule: LossRule, dropped: Arc<AtomicUsize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let downstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'read: loop {
        let read = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&chunk[..read]);
        while let Some(operation) = next_operation(&pending) {
            let bytes: Vec<u8> = pending.drain(..operation.len).collect();
            let lose = operation
                .payload
                .is_some_and(|(start, end)| rule(&bytes[start..end]));
            if lose {
                dropped.fetch_add(1, Ordering::SeqCst);
            } else if server_write.write_all(&bytes).await.is_err() {
                break 'read;
            }
        }
    }
    downstream.abort();
}

/// One whole client operation at the start of a buffer: its length, and its payload's range for
/// a `PUB` or `HPUB` (headers included).
struct Operation {
    len: usize,
    payload: Option<(usize, usize)>,
}

fn next_operation(buffer: &[u8]) -> Option<Operation> {
    let line_end = buffer.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buffer[..line_end]).ok()?;
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    if verb != "PUB" && verb != "HPUB" {
        return Some(Operation {
            len: line_end + 2,
            payload: None,
        });
    }
    let size: usize = line.split_ascii_whitespace().last()?.parse().ok()?;
    let start = line_end + 2;
    let end = start + size;
    (buffer.len() >= end + 2).then_some(Operation {
        len: end + 2,
        payload: Some((start, end)),
    })
}
