//! Talking raw HTTP/1.1 to the gateway over TCP, so a case can send what no well-behaved client
//! would (invalid UTF-8, lying lengths, half a header), and the two slow clients.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// What a case saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// An HTTP status; for the slow clients, after the gateway closed the connection.
    Status(u16),
    /// The gateway closed the connection without a status.
    Closed,
    /// Nothing within the case's time: the connection was still held open.
    Held,
}

impl Seen {
    pub fn label(&self) -> String {
        match self {
            Seen::Status(code) => code.to_string(),
            Seen::Closed => "closed".into(),
            Seen::Held => "held".into(),
        }
    }

    /// A 5xx, or a connection the gateway kept past the case's time.
    pub fn is_failure(&self) -> bool {
        match self {
            Seen::Status(code) => *code >= 500,
            Seen::Closed => false,
            Seen::Held => true,
        }
    }
}

/// Writes `bytes` on a fresh connection and reads the answer to its end (every case asks for
/// `connection: close`); the status line's code.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Seen {
    let deadline = Instant::now() + limit;
    let Ok(Ok(mut stream)) = timeout(limit, TcpStream::connect(addr)).await else {
        return Seen::Closed;
    };
    // The gateway may answer (413, 431) and close before reading everything: a failed write is
    // not the end of the case, the answer is.
    let _ = timeout(limit, stream.write_all(bytes)).await;
    read_to_end(&mut stream, deadline).await
}

/// Reads until the gateway closes the connection or `deadline`; the status, if one came.
async fn read_to_end(stream: &mut TcpStream, deadline: Instant) -> Seen {
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Seen::Held,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(read)) => {
                if head.len() < 64 {
                    head.extend_from_slice(&chunk[..read.min(64)]);
                }
            }
        }
    }
    status_of(&head).map_or(Seen::Closed, Seen::Status)
}

fn status_of(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..head.len().min(12))?).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Sends a request's headers one byte every 200 ms and never ends them: the gateway must close
/// the connection (its header timeout) before `limit`.
pub async fn slowloris(addr: SocketAddr, limit: Duration) -> Seen {
    let deadline = Instant::now() + limit;
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return Seen::Closed;
    };
    let headers = b"POST /v1/completions HTTP/1.1\r\nhost: slow\r\nx-slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'));
    let mut buffer = [0u8; 1024];
    for byte in headers {
        if Instant::now() >= deadline {
            return Seen::Held;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        // The gateway may have answered (408) and closed: look without waiting long.
        match timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(read)) => return status_of(&buffer[..read]).map_or(Seen::Closed, Seen::Status),
            Err(_) => {}
        }
    }
    read_to_end(&mut stream, deadline).await
}

/// Asks for a long streamed answer on a connection with a small receive buffer and reads
/// nothing for `limit` (less a few seconds): the gateway must give up on it and close. Then
/// reads what is there: the status and the end.
pub async fn stop_reading(addr: SocketAddr, request: &[u8], limit: Duration) -> Seen {
    let drain = Duration::from_secs(5).min(limit / 2);
    let Ok(socket) = TcpSocket::new_v4() else {
        return Seen::Closed;
    };
    let _ = socket.set_recv_buffer_size(4096);
    let Ok(mut stream) = socket.connect(addr).await else {
        return Seen::Closed;
    };
    if stream.write_all(request).await.is_err() {
        return Seen::Closed;
    }
    tokio::time::sleep(limit - drain).await;
    read_to_end(&mut stream, Instant::now() + drain).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_5xx_or_a_held_connection_fails_a_case() {
        assert!(Seen::Status(500).is_failure());
        assert!(Seen::Status(503).is_failure());
        assert!(Seen::Held.is_failure());
        assert!(!Seen::Status(400).is_failure());
        assert!(!Seen::Status(200).is_failure());
        assert!(!Seen::Closed.is_failure());
    }

    #[test]
    fn the_status_is_read_from_the_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 413 Payload Too Large\r\n"), Some(413));
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
        assert_eq!(status_of(b"garbage"), None);
    }
}
