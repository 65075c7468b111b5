//! The envelope of every answer and stream chunk: both endpoints write the same fields around
//! their own `choices`.

use super::common::UsageBody;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct ResponseBody<Choice> {
    pub id: String,
    pub object: &'static str,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    /// On a whole answer, and on the last chunk when `stream_options.include_usage` asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
}

impl<Choice> ResponseBody<Choice> {
    pub fn new(
        id: Uuid,
        object: &'static str,
        model: &str,
        choices: Vec<Choice>,
        usage: Option<UsageBody>,
    ) -> Self {
        Self {
            id: id.to_string(),
            object,
            created: unix_now(),
            model: model.to_owned(),
            choices,
            usage,
        }
    }
}

/// Seconds since the Unix epoch, for `created`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
