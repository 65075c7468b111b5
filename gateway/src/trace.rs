//! W3C trace context for queued requests.
//!
//! The gateway starts a trace per request (or continues the client's `traceparent`) and sends it
//! in the NATS message headers, so the worker's spans join the same trace.

use axum::http::HeaderMap;
use uuid::Uuid;

/// A `traceparent` whose trace id is the request id and whose span id is derived from it.
pub fn traceparent_for(request_id: Uuid) -> String {
    let bytes = request_id.as_bytes();
    let span_id = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) | 1;
    format!("00-{}-{span_id:016x}-01", request_id.simple())
}

/// The client's `traceparent` when it is well formed (version 00, non-zero ids).
pub fn incoming_traceparent(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = value.split('-').collect();
    let valid = parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts[1..]
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        && parts[1].chars().any(|c| c != '0')
        && parts[2].chars().any(|c| c != '0');
    valid.then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traceparent_is_well_formed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            traceparent_for(Uuid::now_v7()).parse().unwrap(),
        );
        assert!(incoming_traceparent(&headers).is_some());
    }

    #[test]
    fn malformed_traceparent_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "00-zz-11-01".parse().unwrap());
        assert!(incoming_traceparent(&headers).is_none());
    }
}
