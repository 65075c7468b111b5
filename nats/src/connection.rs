//! Connecting to NATS the way every service here needs: with the flags' credentials and TLS,
//! keep retrying while NATS is down, never give up, and fail at once on what no retry fixes.
//!
//! The first connection is tried once across the seed list. If it succeeds, that is the client.
//! If NATS refuses the credentials, the TLS handshake fails or a file named by a flag is
//! unusable, [`connect`] fails with an error naming the flag, so a misconfigured service stops at
//! start instead of retrying forever. If NATS is merely unreachable, the connection is retried in
//! the background (the service starts and reports not-ready until NATS is up). Reconnects are
//! unlimited, and every change of connection state is logged once; a refused publish or
//! subscription (a permission the user lacks) is logged as a warning with the server's words.

use crate::client_args::{Credentials, NatsArgs};
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, ServerError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a connection could not even be attempted, or was refused for good.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `--nats-url` is empty or an entry is not an address.
    #[error("{0}")]
    ServerList(String),
    /// A file named by a flag cannot be read or does not hold what the flag needs.
    #[error("{flag} {}: {reason}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// NATS refused who we said we are.
    #[error("NATS refused the credentials given by {credentials}: {source}")]
    Refused {
        credentials: String,
        source: async_nats::ConnectError,
    },
    /// The TLS handshake failed.
    #[error("TLS with NATS failed ({tls}): {source}")]
    Tls {
        tls: String,
        source: async_nats::ConnectError,
    },
    /// Anything else the client refused before connecting.
    #[error("cannot connect to NATS at {url}: {source}")]
    Other {
        url: String,
        source: async_nats::ConnectError,
    },
}

/// Connects to the servers of `args` as `name`, with request inboxes under `inbox_prefix` (each
/// role has its own, so its users may read only their own replies: see `nats/config`).
pub async fn connect(
    args: &NatsArgs,
    name: &str,
    inbox_prefix: &str,
) -> Result<Client, ConnectError> {
    let servers = args.servers().map_err(ConnectError::ServerList)?;
    check_tls_files(args)?;
    let credentials = args.credentials();
    let first = options(args, &credentials, name, inbox_prefix)
        .await?
        .connect(servers.clone())
        .await;
    match first {
        Ok(client) => Ok(client),
        Err(error) => match failure_kind(&error) {
            // Unreachable for now: NATS may still be starting. Retry in the background.
            ConnectErrorKind::Io | ConnectErrorKind::TimedOut | ConnectErrorKind::Dns => {
                tracing::warn!(%error, url = %args.url, "NATS unreachable; retrying in the background");
                options(args, &credentials, name, inbox_prefix)
                    .await?
                    .retry_on_initial_connect()
                    .connect(servers)
                    .await
                    .map_err(|source| ConnectError::Other {
                        url: args.url.clone(),
                        source,
                    })
            }
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                Err(ConnectError::Refused {
                    credentials: credentials.describe(),
                    source: error,
                })
            }
            ConnectErrorKind::Tls => Err(ConnectError::Tls {
                tls: describe_tls(args),
                source: error,
            }),
            _ => Err(ConnectError::Other {
                url: args.url.clone(),
                source: error,
            }),
        },
    }
}

/// The error's kind, except that a failed TLS handshake, which the client reports as an I/O
/// error (an untrusted certificate, a refused client certificate), counts as TLS: no retry
/// fixes it.
fn failure_kind(error: &async_nats::ConnectError) -> ConnectErrorKind {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if current.is::<async_nats::rustls::Error>()
            || inner.is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return ConnectErrorKind::Tls;
        }
        cause = inner.or_else(|| current.source());
    }
    error.kind()
}

/// The options every connection of a service uses.
async fn options(
    args: &NatsArgs,
    credentials: &Credentials,
    name: &str,
    inbox_prefix: &str,
) -> Result<ConnectOptions, ConnectError> {
    let described = credentials.describe();
    let mut options = ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(inbox_prefix)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(5))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let credentials = described.clone();
            async move { log_event(event, &credentials) }
        });
    options = match credentials {
        Credentials::Anonymous => options,
        Credentials::CredsFile(path) => {
            options
                .credentials_file(path)
                .await
                .map_err(|error| ConnectError::File {
                    flag: "--nats-creds",
                    path: path.clone(),
                    reason: error.to_string(),
                })?
        }
        Credentials::NkeyFile(path) => options.nkey(read_nkey_seed(path)?),
        Credentials::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
    };
    if let Some(ca) = &args.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.require_tls(args.tls_required()))
}

/// The wait before reconnect attempt `attempts`: 100 ms doubling up to 2 s. The client counts
/// attempts across the whole seed list and without bound, so no arithmetic may overflow.
fn reconnect_delay(attempts: usize) -> Duration {
    let doublings = attempts.min(5) as u32;
    Duration::from_millis((100u64 << doublings).min(2_000))
}

fn log_event(event: Event, credentials: &str) {
    match event {
        Event::Connected => tracing::info!("connected to NATS"),
        Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        Event::ServerError(ServerError::AuthorizationViolation) => {
            tracing::error!(credentials, "NATS refused these credentials; retrying")
        }
        Event::ServerError(error) => tracing::warn!(%error, "NATS refused an operation"),
        Event::ClientError(error) => {
            tracing::info!(%error, credentials, "NATS connection attempt failed")
        }
        other => tracing::info!(event = %other, "NATS connection event"),
    }
}

/// The seed in `path`: one line, a user nkey seed (`SU` and 56 more base32 characters).
fn read_nkey_seed(path: &Path) -> Result<String, ConnectError> {
    let fail = |reason: String| ConnectError::File {
        flag: "--nats-nkey",
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
    let seed = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("SU"))
        .ok_or_else(|| fail("holds no user nkey seed (a line starting with SU)".into()))?;
    if seed.len() != 58 || !seed.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(fail(
            "the user nkey seed is malformed (58 base32 characters expected)".into(),
        ));
    }
    Ok(seed.to_owned())
}

/// Each TLS file is readable PEM holding what its flag needs, checked before connecting so the
/// error names the flag rather than "TLS error".
fn check_tls_files(args: &NatsArgs) -> Result<(), ConnectError> {
    let files = [
        ("--nats-tls-ca", &args.tls_ca, "CERTIFICATE"),
        ("--nats-tls-cert", &args.tls_cert, "CERTIFICATE"),
        ("--nats-tls-key", &args.tls_key, "PRIVATE KEY"),
    ];
    for (flag, path, label) in files {
        let Some(path) = path else { continue };
        let fail = |reason: String| ConnectError::File {
            flag,
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
        let holds_it = text
            .lines()
            .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
        if !holds_it {
            return Err(fail(format!("not a PEM file holding a {label}")));
        }
    }
    Ok(())
}

/// The TLS flags in use, for errors.
fn describe_tls(args: &NatsArgs) -> String {
    let mut parts = Vec::new();
    match &args.tls_ca {
        Some(ca) => parts.push(format!("--nats-tls-ca {}", ca.display())),
        None => parts.push("no --nats-tls-ca: the system's roots".into()),
    }
    if let Some(cert) = &args.tls_cert {
        parts.push(format!("--nats-tls-cert {}", cert.display()));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    const SEED: &str = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";

    #[test]
    fn the_reconnect_delay_doubles_to_two_seconds_and_never_overflows() {
        let delays: Vec<u128> = (0..7).map(|a| reconnect_delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(reconnect_delay(usize::MAX), Duration::from_secs(2));
    }

    #[test]
    fn an_nkey_file_gives_its_user_seed_or_says_what_is_wrong() {
        let good = file_with(&format!("# the worker's seed\n{SEED}\n"));
        assert_eq!(read_nkey_seed(good.path()).unwrap(), SEED);

        let public_key_only =
            file_with("UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\n");
        let error = read_nkey_seed(public_key_only.path())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--nats-nkey ") && error.contains("no user nkey seed"),
            "{error}"
        );

        let truncated = file_with(&SEED[..30]);
        let error = read_nkey_seed(truncated.path()).unwrap_err().to_string();
        assert!(error.contains("malformed"), "{error}");

        let error = read_nkey_seed(Path::new("/nonexistent/seed.nk")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--nats-nkey /nonexistent/seed.nk: "),
            "{error}"
        );
    }

    #[test]
    fn tls_files_are_checked_and_named_before_connecting() {
        let certificate =
            file_with("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
        let key = file_with("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
        let mut args = NatsArgs::plain("tls://127.0.0.1:4222");
        args.tls_ca = Some(certificate.path().into());
        args.tls_cert = Some(certificate.path().into());
        args.tls_key = Some(key.path().into());
        check_tls_files(&args).unwrap();

        args.tls_key = Some(certificate.path().into());
        let error = check_tls_files(&args).unwrap_err().to_string();
        assert!(
            error.starts_with("--nats-tls-key ")
                && error.contains("not a PEM file holding a PRIVATE KEY"),
            "{error}"
        );
        args.tls_ca = Some("/nonexistent/ca.pem".into());
        let error = check_tls_files(&args).unwrap_err().to_string();
        assert!(
            error.starts_with("--nats-tls-ca /nonexistent/ca.pem: "),
            "{error}"
        );
    }
}
