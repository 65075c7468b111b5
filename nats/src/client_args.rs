//! The NATS connection flags both services take (`#[command(flatten)]`), and what they mean
//! before any connection is tried: the seed list, the credentials, the TLS files.
//!
//! Every flag also reads `CODER_<FLAG>` from the environment; the password is best given that
//! way (`CODER_NATS_PASSWORD`), and is never printed: not by `--help`, not by `Debug`, not in
//! an error.

use async_nats::ServerAddr;
use std::fmt;
use std::path::PathBuf;

/// Where NATS is and how to prove who we are to it.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server(s) to connect to, comma-separated (a cluster's seed list); `tls://` requires
    /// TLS.
    #[arg(
        long = "nats-url",
        env = "CODER_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,

    /// Credentials file (user JWT and nkey seed, as `nsc` writes it) for operator-mode NATS.
    #[arg(long = "nats-creds", env = "CODER_NATS_CREDS", conflicts_with_all = ["nkey", "user"])]
    pub creds: Option<PathBuf>,

    /// File holding a user nkey seed (`SU...`), for NATS users authenticated by nkey.
    #[arg(long = "nats-nkey", env = "CODER_NATS_NKEY", conflicts_with = "user")]
    pub nkey: Option<PathBuf>,

    /// NATS user name; the password comes from `--nats-password` (better: `CODER_NATS_PASSWORD`).
    #[arg(long = "nats-user", env = "CODER_NATS_USER", requires = "password")]
    pub user: Option<String>,

    /// The NATS user's password; prefer the environment variable, which `ps` does not show.
    #[arg(
        long = "nats-password",
        env = "CODER_NATS_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    pub password: Option<Password>,

    /// PEM file of the certificate authorities that sign the NATS servers' certificates; given,
    /// TLS is required.
    #[arg(long = "nats-tls-ca", env = "CODER_NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate, for servers that verify clients (mutual TLS); needs
    /// `--nats-tls-key`.
    #[arg(
        long = "nats-tls-cert",
        env = "CODER_NATS_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--nats-tls-cert`.
    #[arg(
        long = "nats-tls-key",
        env = "CODER_NATS_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

/// A secret that prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Password {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("the NATS password is empty".into());
        }
        Ok(Self(value.to_owned()))
    }
}

/// How the client authenticates, as the flags say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    CredsFile(PathBuf),
    NkeyFile(PathBuf),
    UserPassword { user: String, password: Password },
}

impl NatsArgs {
    /// Args for `url` with no credentials and no TLS files (tests, tools).
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            creds: None,
            nkey: None,
            user: None,
            password: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// The seed list of `--nats-url`, each entry checked.
    pub fn servers(&self) -> Result<Vec<ServerAddr>, String> {
        parse_seed_list(&self.url)
    }

    /// The credentials the flags give (clap already refused conflicting ones).
    pub fn credentials(&self) -> Credentials {
        match (&self.creds, &self.nkey, &self.user, &self.password) {
            (Some(path), ..) => Credentials::CredsFile(path.clone()),
            (None, Some(path), ..) => Credentials::NkeyFile(path.clone()),
            (None, None, Some(user), Some(password)) => Credentials::UserPassword {
                user: user.clone(),
                password: password.clone(),
            },
            _ => Credentials::Anonymous,
        }
    }

    /// Whether any TLS option is set, or a `tls://` URL asks for TLS.
    pub fn tls_required(&self) -> bool {
        self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self
                .url
                .split(',')
                .any(|entry| entry.trim().starts_with("tls://"))
    }
}

impl Credentials {
    /// Which flags these came from, for errors and logs (never the secret itself).
    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "no credentials (anonymous)".into(),
            Credentials::CredsFile(path) => format!("--nats-creds {}", path.display()),
            Credentials::NkeyFile(path) => format!("--nats-nkey {}", path.display()),
            Credentials::UserPassword { user, .. } => {
                format!("--nats-user {user:?} with --nats-password")
            }
        }
    }
}

/// `nats://a:4222, tls://b:4222` → two addresses; an empty or unparsable entry is named.
pub fn parse_seed_list(list: &str) -> Result<Vec<ServerAddr>, String> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    if entries.iter().all(|entry| entry.is_empty()) {
        return Err("--nats-url is empty: give at least one NATS server".into());
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            if entry.is_empty() {
                return Err(format!("--nats-url {list:?}: entry {} is empty", index + 1));
            }
            entry.parse::<ServerAddr>().map_err(|error| {
                format!("--nats-url {list:?}: {entry:?} is not a NATS server address ({error})")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn parse(args: &[&str]) -> Result<NatsArgs, clap::Error> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.nats)
    }

    #[test]
    fn a_seed_list_gives_every_server() {
        let servers = parse_seed_list("nats://a:4222, tls://b:4223,c").unwrap();
        let hosts: Vec<_> = servers.iter().map(|s| (s.host(), s.port())).collect();
        assert_eq!(hosts, [("a", 4222), ("b", 4223), ("c", 4222)]);
        assert!(servers[1].tls_required());
    }

    #[test]
    fn a_bad_seed_list_names_the_entry() {
        let error = parse_seed_list("nats://a:4222,nats://b:notaport").unwrap_err();
        assert!(error.contains("\"nats://b:notaport\""), "{error}");
        let error = parse_seed_list("nats://a:4222,,nats://b").unwrap_err();
        assert!(error.contains("entry 2 is empty"), "{error}");
        assert!(parse_seed_list(" , ").unwrap_err().contains("is empty"));
    }

    #[test]
    fn the_password_never_prints() {
        let args = parse(&["--nats-user", "gateway", "--nats-password", "s3cret"]).unwrap();
        assert!(!format!("{args:?}").contains("s3cret"));
        assert!(!args.credentials().describe().contains("s3cret"));
        assert_eq!(
            args.credentials(),
            Credentials::UserPassword {
                user: "gateway".into(),
                password: "s3cret".parse().unwrap()
            }
        );
    }

    #[test]
    fn credentials_are_one_kind_and_complete() {
        assert!(parse(&["--nats-user", "gateway"]).is_err());
        assert!(parse(&["--nats-password", "x"]).is_err());
        assert!(parse(&["--nats-creds", "a", "--nats-nkey", "b"]).is_err());
        assert!(parse(&[
            "--nats-creds",
            "a",
            "--nats-user",
            "u",
            "--nats-password",
            "p"
        ])
        .is_err());
        assert!(parse(&["--nats-tls-cert", "c"]).is_err());
        assert!(parse(&["--nats-tls-key", "k"]).is_err());
        let args = parse(&["--nats-nkey", "seed.nk"]).unwrap();
        assert_eq!(args.credentials(), Credentials::NkeyFile("seed.nk".into()));
        assert_eq!(parse(&[]).unwrap().credentials(), Credentials::Anonymous);
    }

    #[test]
    fn tls_is_required_by_a_tls_url_or_any_tls_file() {
        assert!(!parse(&[]).unwrap().tls_required());
        assert!(parse(&["--nats-url", "nats://a,tls://b"])
            .unwrap()
            .tls_required());
        assert!(parse(&["--nats-tls-ca", "ca.pem"]).unwrap().tls_required());
    }
}
