//! The shipped security for tests: users per role and TLS from `nats/config/single.conf`, a
//! fresh local CA per server from `scripts/nats-pki.sh`, random passwords, and each role's
//! client flags and connect options.

use crate::client_args::NatsArgs;
use crate::subjects;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A user of the shipped config (`nats/config/auth.conf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Worker,
    Monitor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Gateway, Role::Worker, Role::Monitor];

    /// The user name, which also names its certificate and its password's variable.
    pub fn user(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Monitor => "monitor",
        }
    }

    /// The inbox prefix its permissions allow.
    pub fn inbox_prefix(self) -> &'static str {
        match self {
            Role::Gateway => subjects::GATEWAY_INBOX_PREFIX,
            Role::Worker => subjects::WORKER_INBOX_PREFIX,
            Role::Monitor => "_INBOX.monitor",
        }
    }

    /// The server's environment variable holding its password.
    fn password_variable(self) -> String {
        format!("NATS_{}_PASSWORD", self.user().to_uppercase())
    }
}

/// Certificates and passwords of one secured server.
pub(super) struct Security {
    pki: tempfile::TempDir,
    passwords: Vec<(Role, String)>,
}

impl Security {
    /// A fresh CA and certificates, and a random password per role.
    pub(super) fn new() -> Self {
        let pki = tempfile::tempdir().expect("temporary PKI directory");
        let status = Command::new(workspace().join("scripts/nats-pki.sh"))
            .arg(pki.path())
            .status()
            .expect("scripts/nats-pki.sh runs (it needs openssl)");
        assert!(status.success(), "scripts/nats-pki.sh failed: {status}");
        let passwords = Role::ALL
            .iter()
            .map(|&role| (role, uuid::Uuid::now_v7().simple().to_string()))
            .collect();
        Self { pki, passwords }
    }

    /// The shipped config that uses this security.
    pub(super) fn config() -> PathBuf {
        workspace().join("nats/config/single.conf")
    }

    /// The variables `single.conf` reads.
    pub(super) fn server_env(&self) -> Vec<(String, String)> {
        let file = |name: &str| self.file(name).to_string_lossy().into_owned();
        let mut env = vec![
            ("NATS_SERVER_TLS_CERT".to_owned(), file("server.pem")),
            ("NATS_SERVER_TLS_KEY".to_owned(), file("server-key.pem")),
            ("NATS_SERVER_TLS_CA".to_owned(), file("ca.pem")),
        ];
        for (role, password) in &self.passwords {
            env.push((role.password_variable(), password.clone()));
        }
        env
    }

    pub(super) fn password(&self, role: Role) -> &str {
        let (_, password) = self
            .passwords
            .iter()
            .find(|(r, _)| *r == role)
            .expect("every role has a password");
        password
    }

    /// A file of the PKI directory (`ca.pem`, `gateway.pem`, `gateway-key.pem`...).
    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.pki.path().join(name)
    }

    /// The flags a service of `role` connects with (URL excepted).
    pub(super) fn client_flags(&self, role: Role) -> Vec<String> {
        let file = |name: String| self.file(&name).to_string_lossy().into_owned();
        vec![
            "--nats-user".into(),
            role.user().into(),
            "--nats-password".into(),
            self.password(role).into(),
            "--nats-tls-ca".into(),
            file("ca.pem".into()),
            "--nats-tls-cert".into(),
            file(format!("{}.pem", role.user())),
            "--nats-tls-key".into(),
            file(format!("{}-key.pem", role.user())),
        ]
    }

    /// As [`Security::client_flags`], as parsed args for `url`.
    pub(super) fn client_args(&self, role: Role, url: &str) -> NatsArgs {
        NatsArgs {
            user: Some(role.user().into()),
            password: Some(self.password(role).parse().expect("a password")),
            tls_ca: Some(self.file("ca.pem")),
            tls_cert: Some(self.file(&format!("{}.pem", role.user()))),
            tls_key: Some(self.file(&format!("{}-key.pem", role.user()))),
            ..NatsArgs::plain(url)
        }
    }
}

/// The workspace root, where `nats/config` and `scripts` are.
pub(super) fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
