//! Subject, stream and consumer names.
//!
//! Model names such as `Qwen/Qwen2.5-Coder-1.5B:Q4_K_M` contain characters that NATS subjects
//! (`.`, `*`, `>`, whitespace) and consumer names (`/`, `\`) forbid. [`model_token`] maps every
//! model name to one subject token, reversibly: ASCII letters, digits, `-` and `_` stay, every
//! other byte becomes `~` followed by two hex digits (so `~` itself is escaped and the mapping is
//! injective).

use uuid::Uuid;

/// The JetStream stream that holds queued requests.
pub const STREAM_NAME: &str = "CODER_REQUESTS";
/// Subjects captured by [`STREAM_NAME`].
pub const REQUESTS_WILDCARD: &str = "coder.requests.>";
/// Prefix of request subjects; the model token and the partition follow.
const REQUESTS_PREFIX: &str = "coder.requests.";
/// Prefix of doorbell subjects; the model token follows.
const DOORBELL_PREFIX: &str = "coder.doorbell.";
/// Prefix of every gateway's reply subjects.
const REPLIES_PREFIX: &str = "coder.replies.";
/// Prefix of cancel subjects; the request id follows.
const CANCEL_PREFIX: &str = "coder.cancel.";
/// Every cancel, for a worker's single subscription.
pub const CANCEL_WILDCARD: &str = "coder.cancel.*";
/// The JetStream stream that keeps recent cancels (subjects [`CANCEL_WILDCARD`]), so a worker
/// that starts later still learns of them.
pub const CANCEL_STREAM_NAME: &str = "CODER_CANCELS";
/// Prefix of heartbeat subjects.
const HEARTBEAT_PREFIX: &str = "coder.heartbeat.";
/// Every heartbeat, for a gateway's single subscription.
pub const HEARTBEAT_WILDCARD: &str = "coder.heartbeat.>";
/// Prefix of the durable consumer name for a model; the model token follows.
const CONSUMER_PREFIX: &str = "coder-";
/// Between the model token and the partition in a consumer name: `~` followed by a letter never
/// occurs in a model token (there it escapes a byte as two hex digits), so names cannot collide.
const CONSUMER_PARTITION_MARK: &str = "~p";
/// The gateways' request inboxes (JetStream acks and API answers): the shipped NATS config lets
/// the gateway user read these and no other inbox.
pub const GATEWAY_INBOX_PREFIX: &str = "_INBOX.gateway";
/// The workers' request inboxes (pulled requests, JetStream API answers).
pub const WORKER_INBOX_PREFIX: &str = "_INBOX.worker";
/// The gateways' default replies scope (`--replies-scope`), the one the shipped NATS config's
/// gateway user may read.
pub const DEFAULT_REPLIES_SCOPE: &str = "gateway";

/// Encodes a model name as one subject token (see the module docs).
pub fn model_token(model: &str) -> String {
    let mut token = String::with_capacity(model.len());
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(byte as char);
        } else {
            token.push_str(&format!("~{byte:02X}"));
        }
    }
    token
}

/// Decodes a token made by [`model_token`]; `None` if it is not one.
pub fn model_from_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `coder.requests.<model-token>.<partition>`: where a model's requests of one partition
/// ([`crate::affinity`]) are published.
pub fn request_subject(model: &str, partition: u16) -> String {
    format!("{REQUESTS_PREFIX}{}.{partition}", model_token(model))
}

/// The model whose request subject this is, if it is one.
pub fn model_from_request_subject(subject: &str) -> Option<String> {
    let (token, partition) = subject.strip_prefix(REQUESTS_PREFIX)?.split_once('.')?;
    partition.parse::<u16>().ok()?;
    model_from_token(token)
}

/// Durable pull consumer name for one partition of a model.
pub fn consumer_name(model: &str, partition: u16) -> String {
    format!(
        "{CONSUMER_PREFIX}{}{CONSUMER_PARTITION_MARK}{partition}",
        model_token(model)
    )
}

/// `coder.doorbell.<model-token>`: the gateway rings it (core NATS, the partition as payload)
/// once JetStream holds a request, so workers pull at once instead of polling every partition.
/// A lost ring costs latency only: workers also sweep their partitions.
pub fn doorbell_subject(model: &str) -> String {
    format!("{DOORBELL_PREFIX}{}", model_token(model))
}

/// `coder.heartbeat.<model-token>.*`: every heartbeat of one model's workers.
pub fn model_heartbeats_wildcard(model: &str) -> String {
    format!("{HEARTBEAT_PREFIX}{}.*", model_token(model))
}

/// `<scope>.<gateway-id>`: where under `coder.replies.` one gateway's replies go. The scope is
/// what NATS permissions can name (a user may read `coder.replies.<scope>.>`), the id tells the
/// gateways of one scope apart.
pub fn gateway_replies_root(scope: &str, gateway_id: &str) -> String {
    format!("{scope}.{gateway_id}")
}

/// Checks a replies scope: one subject token of ASCII letters, digits, `-` and `_`.
pub fn check_replies_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty()
        || !scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "`{scope}` is not a replies scope: use ASCII letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// `coder.replies.<root>.*`: the one subscription a gateway holds for its replies, `root` from
/// [`gateway_replies_root`].
pub fn replies_wildcard(root: &str) -> String {
    format!("{REPLIES_PREFIX}{root}.*")
}

/// `coder.replies.<root>.<request-id>`: where a worker sends a request's events.
pub fn reply_subject(root: &str, request_id: Uuid) -> String {
    format!("{REPLIES_PREFIX}{root}.{}", request_id.simple())
}

/// Checks that `subject`, a queued request's reply header, is one a gateway could have made for
/// request `request_id`: `coder.replies.<root>.<request-id>`, every token plain (no wildcard, no
/// whitespace, none empty). A worker publishes nowhere else, so a request queued by someone
/// else cannot turn it into a publisher to other subjects.
pub fn check_reply_subject(subject: &str, request_id: Uuid) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("reply subject {subject:?} {why}"));
    let Some(rest) = subject.strip_prefix(REPLIES_PREFIX) else {
        return refuse(&format!("is not under `{REPLIES_PREFIX}`"));
    };
    let tokens: Vec<&str> = rest.split('.').collect();
    let plain = |token: &&str| {
        !token.is_empty()
            && !token
                .bytes()
                .any(|b| b == b'*' || b == b'>' || b.is_ascii_whitespace() || b.is_ascii_control())
    };
    if tokens.len() < 2 || !tokens.iter().all(plain) {
        return refuse("is not `coder.replies.<gateway>.<request-id>` with plain tokens");
    }
    if tokens.last() != Some(&request_id.simple().to_string().as_str()) {
        return refuse(&format!(
            "does not end with the request's id {}",
            request_id.simple()
        ));
    }
    Ok(())
}

/// The request id at the end of a reply or cancel subject.
pub fn request_id_from_subject(subject: &str) -> Option<Uuid> {
    let last = subject.rsplit('.').next()?;
    Uuid::try_parse(last).ok()
}

/// `coder.cancel.<request-id>`.
pub fn cancel_subject(request_id: Uuid) -> String {
    format!("{CANCEL_PREFIX}{}", request_id.simple())
}

/// `coder.heartbeat.<model-token>.<worker-id>`.
pub fn heartbeat_subject(model: &str, worker_id: &str) -> String {
    format!("{HEARTBEAT_PREFIX}{}.{worker_id}", model_token(model))
}

/// A fresh id safe to use as a subject token (gateways and workers name themselves with it).
pub fn new_instance_id() -> String {
    Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWKWARD: &[&str] = &[
        "qwen2.5-coder",
        "Qwen/Qwen2.5-Coder-1.5B-Instruct:Q4_K_M",
        "my model with spaces",
        "a.b",
        "a~2Eb",
        "a_b",
        "a-b",
        "*>",
        "ünïcødé",
    ];

    fn is_valid_token(token: &str) -> bool {
        !token.is_empty()
            && token
                .chars()
                .all(|c| !c.is_whitespace() && !matches!(c, '.' | '*' | '>' | '/' | '\\'))
    }

    #[test]
    fn every_model_name_becomes_one_valid_token_and_back() {
        for model in AWKWARD {
            let token = model_token(model);
            assert!(is_valid_token(&token), "{model:?} gave {token:?}");
            assert_eq!(model_from_token(&token).as_deref(), Some(*model));
            assert_eq!(
                model_from_request_subject(&request_subject(model, 15)).as_deref(),
                Some(*model)
            );
        }
    }

    #[test]
    fn distinct_models_get_distinct_tokens() {
        let tokens: std::collections::HashSet<_> = AWKWARD.iter().map(|m| model_token(m)).collect();
        assert_eq!(tokens.len(), AWKWARD.len());
        assert_ne!(model_token("a.b"), model_token("a_b"));
        assert_ne!(model_token("a.b"), model_token("a~2Eb"));
    }

    #[test]
    fn partitions_of_distinct_models_never_share_a_consumer_name() {
        // `x` partition 3 against a model whose token ends the way a partition would.
        let names: std::collections::HashSet<_> = AWKWARD
            .iter()
            .chain(&["x", "x~p3", "x-p3", "x.3"])
            .flat_map(|m| (0..3).map(move |p| consumer_name(m, p)))
            .collect();
        assert_eq!(names.len(), (AWKWARD.len() + 4) * 3);
        assert_eq!(consumer_name("a.b", 7), "coder-a~2Eb~p7");
        assert_eq!(request_subject("a.b", 7), "coder.requests.a~2Eb.7");
    }

    #[test]
    fn only_a_gateway_reply_subject_for_the_request_passes() {
        let id = Uuid::now_v7();
        let other = Uuid::now_v7();
        assert_eq!(
            check_reply_subject(&reply_subject("gateway.gw1", id), id),
            Ok(())
        );
        assert_eq!(check_reply_subject(&reply_subject("gw1", id), id), Ok(()));
        let refused = [
            (
                format!("coder.requests.m.{}", id.simple()),
                "is not under `coder.replies.`",
            ),
            (format!("coder.cancel.{}", id.simple()), "is not under"),
            (
                "$JS.API.STREAM.DELETE.CODER_REQUESTS".to_owned(),
                "is not under",
            ),
            (format!("coder.replies.{}", id.simple()), "plain tokens"),
            (format!("coder.replies.*.{}", id.simple()), "plain tokens"),
            (format!("coder.replies.gw..{}", id.simple()), "plain tokens"),
            ("coder.replies.gw.>".to_owned(), "plain tokens"),
            (format!("coder.replies.g w.{}", id.simple()), "plain tokens"),
            (
                reply_subject("gateway.gw1", other),
                "does not end with the request's id",
            ),
        ];
        for (subject, why) in refused {
            let error = check_reply_subject(&subject, id).unwrap_err();
            assert!(
                error.contains(why) && error.contains(&subject),
                "{subject}: {error}"
            );
        }
    }

    #[test]
    fn request_id_round_trips_through_reply_and_cancel_subjects() {
        let id = Uuid::now_v7();
        assert_eq!(request_id_from_subject(&reply_subject("gw1", id)), Some(id));
        assert_eq!(request_id_from_subject(&cancel_subject(id)), Some(id));
        assert!(reply_subject("gw1", id).starts_with(&replies_wildcard("gw1")[..15]));
        let root = gateway_replies_root("gateway", "gw1");
        assert_eq!(
            reply_subject(&root, id),
            format!("coder.replies.gateway.gw1.{}", id.simple())
        );
        assert_eq!(request_id_from_subject(&reply_subject(&root, id)), Some(id));
    }

    #[test]
    fn a_replies_scope_is_one_plain_token() {
        assert!(check_replies_scope("gateway").is_ok());
        assert!(check_replies_scope("team-a_2").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b"] {
            assert!(check_replies_scope(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_tokens_do_not_decode() {
        assert_eq!(model_from_token("abc~"), None);
        assert_eq!(model_from_token("abc~zz"), None);
        assert_eq!(model_from_request_subject("other.subject"), None);
        assert_eq!(model_from_request_subject("coder.requests.abc"), None);
        assert_eq!(model_from_request_subject("coder.requests.abc.x"), None);
    }
}
