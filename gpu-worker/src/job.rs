//! Turning a delivered message into work, or deciding it is not worth any compute.

use async_nats::HeaderMap;
use coder_nats::headers::RequestHeaders;
use coder_nats::{subjects, GenerationRequest};
use std::time::{Duration, SystemTime};

/// A decoded request ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub request: GenerationRequest,
    pub reply_to: String,
    pub deadline: SystemTime,
    /// JetStream delivery count (1 on the first delivery).
    pub attempt: u32,
    /// Publish → now, from JetStream's own publish timestamp.
    pub queue_wait: Duration,
    pub traceparent: Option<String>,
}

/// What to do with a delivered message.
#[derive(Debug)]
pub enum Intake {
    Run(Job),
    /// Its deadline passed while it was queued: answer `error: expired`, compute nothing.
    Expired(Job),
    /// Cancelled before it got here: answer `error: cancelled`, compute nothing.
    Cancelled(Job),
    /// Cannot be decoded, or asks for its events on a subject that is not a gateway's reply
    /// subject for it: terminate it (never redeliver), log why.
    Poison(String),
}

/// Decides a message's fate. `published` is JetStream's timestamp of the publish; `cancelled`
/// says whether a request id was cancelled.
pub fn intake(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    attempt: i64,
    published: SystemTime,
    now: SystemTime,
    cancelled: impl Fn(uuid::Uuid) -> bool,
) -> Intake {
    let Some(headers) = headers.and_then(RequestHeaders::from_header_map) else {
        return Intake::Poison("missing or malformed reply/deadline headers".into());
    };
    let request = match GenerationRequest::from_json(payload) {
        Ok(request) => request,
        Err(error) => return Intake::Poison(format!("undecodable request: {error}")),
    };
    // A worker publishes only where a gateway waits for this request's events.
    if let Err(error) = subjects::check_reply_subject(&headers.reply_to, request.id) {
        return Intake::Poison(format!("refused to reply: {error}"));
    }
    let job = Job {
        request,
        reply_to: headers.reply_to,
        deadline: headers.deadline,
        attempt: attempt.clamp(1, i64::from(u32::MAX)) as u32,
        queue_wait: now.duration_since(published).unwrap_or_default(),
        traceparent: headers.traceparent,
    };
    if job.deadline <= now {
        Intake::Expired(job)
    } else if cancelled(job.request.id) {
        Intake::Cancelled(job)
    } else {
        Intake::Run(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coder_nats::{Prompt, SamplingParams};

    fn not_cancelled(_: uuid::Uuid) -> bool {
        false
    }

    /// A request's bytes, with the id whose reply subject [`headers`] names.
    fn request_bytes() -> Vec<u8> {
        request_bytes_for(id())
    }

    fn id() -> uuid::Uuid {
        uuid::Uuid::from_u128(0x0123_4567_89ab_7def_8123_4567_89ab_cdef)
    }

    fn request_bytes_for(id: uuid::Uuid) -> Vec<u8> {
        GenerationRequest {
            id,
            model: "m".into(),
            prompt: Prompt::Text("p".into()),
            params: SamplingParams::default(),
        }
        .to_json()
    }

    fn headers(deadline: SystemTime) -> HeaderMap {
        headers_replying_to(deadline, subjects::reply_subject("gateway.g1", id()))
    }

    fn headers_replying_to(deadline: SystemTime, reply_to: String) -> HeaderMap {
        RequestHeaders {
            msg_id: "id".into(),
            reply_to,
            deadline,
            traceparent: None,
        }
        .to_header_map()
    }

    #[test]
    fn a_fresh_request_runs_with_its_queue_wait() {
        let now = SystemTime::now();
        let published = now - Duration::from_millis(250);
        let h = headers(now + Duration::from_secs(10));
        match intake(Some(&h), &request_bytes(), 2, published, now, not_cancelled) {
            Intake::Run(job) => {
                assert_eq!(job.attempt, 2);
                assert_eq!(job.queue_wait, Duration::from_millis(250));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_past_its_deadline_is_expired() {
        let now = SystemTime::now();
        let h = headers(now - Duration::from_millis(1));
        assert!(matches!(
            intake(Some(&h), &request_bytes(), 1, now, now, not_cancelled),
            Intake::Expired(_)
        ));
    }

    #[test]
    fn garbage_and_missing_headers_are_poison() {
        let now = SystemTime::now();
        let h = headers(now + Duration::from_secs(10));
        assert!(matches!(
            intake(Some(&h), b"{nope", 1, now, now, not_cancelled),
            Intake::Poison(_)
        ));
        assert!(matches!(
            intake(None, &request_bytes(), 1, now, now, not_cancelled),
            Intake::Poison(_)
        ));
    }

    #[test]
    fn a_request_replying_anywhere_but_a_gateway_reply_subject_for_it_is_poison() {
        let now = SystemTime::now();
        let later = now + Duration::from_secs(10);
        let elsewhere = [
            "coder.requests.m".to_owned(),
            "coder.cancel.x".to_owned(),
            "coder.replies.>".to_owned(),
            subjects::reply_subject("gateway.g1", uuid::Uuid::now_v7()),
        ];
        for reply_to in elsewhere {
            let h = headers_replying_to(later, reply_to.clone());
            match intake(Some(&h), &request_bytes(), 1, now, now, not_cancelled) {
                Intake::Poison(reason) => assert!(
                    reason.starts_with("refused to reply: reply subject")
                        && reason.contains(&format!("{reply_to:?}")),
                    "{reason}"
                ),
                other => panic!("{reply_to}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_request_cancelled_before_it_arrived_is_cancelled() {
        let now = SystemTime::now();
        let (cancelled, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let is_cancelled = |id| id == cancelled;
        let fate = |id| {
            let reply_to = subjects::reply_subject("gateway.g1", id);
            let h = headers_replying_to(now + Duration::from_secs(10), reply_to);
            intake(Some(&h), &request_bytes_for(id), 1, now, now, is_cancelled)
        };
        assert!(matches!(fate(cancelled), Intake::Cancelled(_)));
        assert!(matches!(fate(other), Intake::Run(_)));
    }
}
