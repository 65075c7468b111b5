//! `GET /v1/models`: the models a live worker serves right now.

use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Serialize)]
pub struct ModelEntry {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// Live workers serving the model.
    pub workers: u64,
    /// Longest prompt + completion, in tokens.
    pub context_length: u32,
}

pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let data = state
        .workers
        .by_model()
        .into_iter()
        .map(|(id, workers)| ModelEntry {
            id,
            object: "model",
            created: 0,
            owned_by: "coder",
            workers: workers.workers,
            context_length: workers.context_length,
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}
