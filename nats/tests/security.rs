//! The shipped NATS security (`nats/config/single.conf`: users per role, mutual TLS) against a
//! real nats-server: who may connect, and what each role may publish and read. Refusals are
//! seen as the server reports them (a `Permissions Violation` error to the client), and where a
//! refused publish could have landed in a stream, the stream shows it did not.

use async_nats::jetstream;
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, ServerError};
use coder_nats::connection::{self, ConnectError};
use coder_nats::provision::{self, ConsumerSettings, StreamSettings};
use coder_nats::subjects;
use coder_nats::testing::{NatsServer, Role};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::sync::mpsc;

const MODEL: &str = "qwen2.5-coder:1.5b";
/// How long a test waits for the server's answer to a refused operation.
const ANSWER: Duration = Duration::from_secs(5);

/// A client of `role` whose server errors (permission violations) the test can read.
async fn client_of(nats: &NatsServer, role: Role) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (errors_tx, errors) = mpsc::unbounded_channel();
    let client =
        ConnectOptions::with_user_and_password(role.user().into(), nats.password(role).into())
            .add_root_certificates(nats.pki_file("ca.pem"))
            .add_client_certificate(
                nats.pki_file(&format!("{}.pem", role.user())),
                nats.pki_file(&format!("{}-key.pem", role.user())),
            )
            .custom_inbox_prefix(role.inbox_prefix())
            .event_callback(move |event| {
                let errors_tx = errors_tx.clone();
                async move {
                    if let Event::ServerError(ServerError::Other(error)) = event {
                        let _ = errors_tx.send(error);
                    }
                }
            })
            .connect(nats.url())
            .await
            .unwrap_or_else(|e| panic!("{} connects: {e}", role.user()));
    (client, errors)
}

/// The next server error, which must be a permission violation naming `subject`.
async fn expect_refused(errors: &mut mpsc::UnboundedReceiver<String>, what: &str, subject: &str) {
    let error = tokio::time::timeout(ANSWER, errors.recv())
        .await
        .unwrap_or_else(|_| panic!("{what} to {subject} was not refused"))
        .expect("the client is alive");
    let error = error.to_lowercase();
    assert!(
        error.contains(&format!("permissions violation for {what}"))
            && error.contains(&subject.to_lowercase()),
        "expected a refused {what} to {subject}, got: {error}"
    );
}

/// No server error arrived while the client round-tripped to the server.
async fn expect_no_refusal(client: &Client, errors: &mut mpsc::UnboundedReceiver<String>) {
    client.flush().await.expect("flush");
    // A PING/PONG after the operation: an error for it would have come before the PONG.
    client.flush().await.expect("flush");
    assert_eq!(errors.try_recv().ok(), None);
}

/// The stream and the model's consumer, as a gateway provisions them.
async fn provisioned(nats: &NatsServer) -> jetstream::Context {
    let (gateway, _) = client_of(nats, Role::Gateway).await;
    let js = jetstream::new(gateway);
    provision::ensure_stream(&js, &StreamSettings::default())
        .await
        .expect("the gateway user provisions the stream");
    provision::ensure_consumers_exist(&js, MODEL, &ConsumerSettings::default())
        .await
        .expect("the gateway user creates a --models consumer");
    js
}

#[tokio::test]
async fn an_anonymous_client_is_refused() {
    let nats = NatsServer::start_secured();
    let error = ConnectOptions::new()
        .add_root_certificates(nats.pki_file("ca.pem"))
        .add_client_certificate(nats.pki_file("worker.pem"), nats.pki_file("worker-key.pem"))
        .connect(nats.url())
        .await
        .expect_err("no user, no entry");
    assert_eq!(error.kind(), ConnectErrorKind::AuthorizationViolation);
}

#[tokio::test]
async fn a_wrong_password_is_refused_naming_the_flags() {
    let nats = NatsServer::start_secured();
    let mut args = nats.client_args(Role::Worker);
    args.password = Some("not-the-password".parse().unwrap());
    let error = connection::connect(&args, "test", subjects::WORKER_INBOX_PREFIX)
        .await
        .expect_err("a wrong password fails at once");
    assert!(matches!(error, ConnectError::Refused { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("--nats-user \"worker\" with --nats-password")
            && message.contains("authorization violation")
            && !message.contains("not-the-password"),
        "{message}"
    );
}

#[tokio::test]
async fn each_role_connects_with_its_flags_and_a_seed_list() {
    let nats = NatsServer::start_secured();
    for role in [Role::Gateway, Role::Worker] {
        let mut args = nats.client_args(role);
        // A dead first seed: the client goes on to the next.
        args.url = format!(
            "tls://127.0.0.1:{},{}",
            coder_nats::testing::free_port(),
            nats.url()
        );
        let client = connection::connect(&args, "test", role.inbox_prefix())
            .await
            .unwrap_or_else(|e| panic!("{} connects: {e}", role.user()));
        client.flush().await.expect("connected");
    }
}

#[tokio::test]
async fn a_client_without_tls_is_refused() {
    let nats = NatsServer::start_secured();
    // Plaintext: the server wants a TLS handshake and answers a plain CONNECT with an error.
    let port: u16 = nats.url().rsplit(':').next().unwrap().parse().unwrap();
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).expect("TCP connect");
    socket.set_read_timeout(Some(ANSWER)).unwrap();
    let password = nats.password(Role::Worker);
    let connect = format!(
        "CONNECT {{\"user\":\"worker\",\"pass\":\"{password}\",\"verbose\":false}}\r\nPING\r\n"
    );
    let _ = socket.write_all(connect.as_bytes());
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("\"tls_required\":true"), "{answer}");
    assert!(
        !answer.contains("PONG"),
        "a plaintext client was served: {answer}"
    );

    // A client that trusts no CA of ours fails the handshake, naming TLS.
    let mut args = nats.client_args(Role::Worker);
    args.tls_ca = None;
    let error = connection::connect(&args, "test", subjects::WORKER_INBOX_PREFIX)
        .await
        .expect_err("the server's certificate is not trusted");
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("no --nats-tls-ca"), "{error}");

    // And one without a client certificate is refused by the server, which verifies clients.
    let mut args = nats.client_args(Role::Worker);
    (args.tls_cert, args.tls_key) = (None, None);
    connection::connect(&args, "test", subjects::WORKER_INBOX_PREFIX)
        .await
        .expect_err("mutual TLS: no client certificate, no entry");
}

#[tokio::test]
async fn the_gateway_reads_only_its_own_replies_and_never_pulls_requests() {
    let nats = NatsServer::start_secured();
    provisioned(&nats).await;
    let (gateway, mut errors) = client_of(&nats, Role::Gateway).await;

    let own = subjects::replies_wildcard(&subjects::gateway_replies_root(
        subjects::DEFAULT_REPLIES_SCOPE,
        "gw1",
    ));
    let _own = gateway.subscribe(own).await.unwrap();
    expect_no_refusal(&gateway, &mut errors).await;

    for subject in [
        "coder.replies.other.>",
        "coder.replies.>",
        "coder.requests.>",
    ] {
        let _sub = gateway.subscribe(subject).await.unwrap();
        expect_refused(&mut errors, "subscription", subject).await;
    }
    // Another role's inbox, where pulled requests arrive.
    let _sub = gateway.subscribe("_INBOX.worker.>").await.unwrap();
    expect_refused(&mut errors, "subscription", "_INBOX.worker.>").await;

    // Pulling from a model's consumer is the workers' call.
    let next = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
        subjects::STREAM_NAME,
        subjects::consumer_name(MODEL, 0)
    );
    gateway.publish(next.clone(), "1".into()).await.unwrap();
    expect_refused(&mut errors, "publish", &next).await;
    // As is injecting events into a reply subject.
    let reply = subjects::reply_subject("gateway.gw2", uuid::Uuid::now_v7());
    gateway.publish(reply.clone(), "{}".into()).await.unwrap();
    expect_refused(&mut errors, "publish", &reply).await;
}

#[tokio::test]
async fn a_worker_cannot_queue_requests_read_replies_or_change_the_stream() {
    let nats = NatsServer::start_secured();
    let js = provisioned(&nats).await;
    let (worker, mut errors) = client_of(&nats, Role::Worker).await;

    let request = subjects::request_subject(MODEL, 0);
    worker.publish(request.clone(), "{}".into()).await.unwrap();
    expect_refused(&mut errors, "publish", &request).await;
    let mut stream = js.get_stream(subjects::STREAM_NAME).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);

    let _sub = worker.subscribe("coder.replies.>").await.unwrap();
    expect_refused(&mut errors, "subscription", "coder.replies.>").await;

    let update = format!("$JS.API.STREAM.UPDATE.{}", subjects::STREAM_NAME);
    worker.publish(update.clone(), "{}".into()).await.unwrap();
    expect_refused(&mut errors, "publish", &update).await;

    // What it may do: provision its consumer (the stream exists) and publish a heartbeat.
    let worker_js = jetstream::new(worker.clone());
    provision::ensure_consumers(&worker_js, MODEL, &ConsumerSettings::default())
        .await
        .expect("the worker user creates its model's consumers");
    worker
        .publish(subjects::heartbeat_subject(MODEL, "w1"), "{}".into())
        .await
        .unwrap();
    // And learn of other workers and of new requests (cache affinity).
    let _peers = worker
        .subscribe(subjects::model_heartbeats_wildcard(MODEL))
        .await
        .unwrap();
    let _doorbell = worker
        .subscribe(subjects::doorbell_subject(MODEL))
        .await
        .unwrap();
    expect_no_refusal(&worker, &mut errors).await;
}

#[tokio::test]
async fn the_monitor_reads_state_and_changes_nothing() {
    let nats = NatsServer::start_secured();
    provisioned(&nats).await;
    let (monitor, mut errors) = client_of(&nats, Role::Monitor).await;
    let js = jetstream::new(monitor.clone());
    let mut stream = js
        .get_stream(subjects::STREAM_NAME)
        .await
        .expect("the monitor reads the stream");
    stream.info().await.expect("stream info");
    stream
        .consumer_info(subjects::consumer_name(MODEL, 0))
        .await
        .expect("consumer info");

    let request = subjects::request_subject(MODEL, 0);
    monitor.publish(request.clone(), "{}".into()).await.unwrap();
    expect_refused(&mut errors, "publish", &request).await;
    let _sub = monitor.subscribe("coder.>").await.unwrap();
    expect_refused(&mut errors, "subscription", "coder.>").await;
}
