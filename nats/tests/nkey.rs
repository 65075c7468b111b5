//! `--nats-nkey` against a real nats-server whose user is known by its nkey: the seed file's
//! user connects and may publish; another user's seed is refused, naming the flag.
//!
//! Creds files (`--nats-creds`: a user JWT beside the seed) need an operator-mode server with
//! an account JWT resolver, which these tests do not run: only their file errors are tested
//! (`gateway/tests/nats_security.rs`).

use coder_nats::client_args::NatsArgs;
use coder_nats::connection::{connect, ConnectError};
use coder_nats::testing::NatsServer;
use futures::StreamExt;
use std::io::Write;

/// A server whose one user is `user`, by public nkey, allowed everything in its account.
fn server_for(user: &nkeys::KeyPair) -> NatsServer {
    NatsServer::start_with_config(&format!(
        "accounts {{ CODER {{ jetstream: enabled, users: [ {{ nkey: {} }} ] }} }}\n",
        user.public_key()
    ))
}

fn seed_file(user: &nkeys::KeyPair) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{}", user.seed().unwrap()).unwrap();
    file
}

fn args_with_seed(nats: &NatsServer, seed: &tempfile::NamedTempFile) -> NatsArgs {
    NatsArgs {
        nkey: Some(seed.path().to_owned()),
        ..NatsArgs::plain(nats.url())
    }
}

#[tokio::test]
async fn the_seed_files_user_connects_and_publishes() {
    let user = nkeys::KeyPair::new_user();
    let nats = server_for(&user);
    let seed = seed_file(&user);

    let client = connect(&args_with_seed(&nats, &seed), "nkey-test", "_INBOX")
        .await
        .expect("the nkey user is let in");
    let mut subscription = client.subscribe("nkey.test").await.unwrap();
    client.publish("nkey.test", "hello".into()).await.unwrap();
    client.flush().await.unwrap();
    let message = subscription.next().await.unwrap();
    assert_eq!(&message.payload[..], b"hello");
}

#[tokio::test]
async fn another_users_seed_is_refused_naming_the_flag() {
    let nats = server_for(&nkeys::KeyPair::new_user());
    let stranger_key = nkeys::KeyPair::new_user();
    let stranger = seed_file(&stranger_key);

    let error = connect(&args_with_seed(&nats, &stranger), "nkey-test", "_INBOX")
        .await
        .expect_err("a seed the server does not know is refused");
    assert!(matches!(error, ConnectError::Refused { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("--nats-nkey"), "{text}");
    assert!(
        !text.contains(&stranger_key.seed().unwrap()),
        "the seed is never shown"
    );
}
