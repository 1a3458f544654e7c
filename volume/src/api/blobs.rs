//! `GET /-/blobs`: every blob's sidecar, one JSON object per line, streamed
//! as the data dirs are walked (memory does not grow with the blob count).

use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;

pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.list(tx) {
            tracing::error!(error = %e, "blob listing failed");
        }
    });
    let lines = ReceiverStream::new(rx).map(|meta| {
        let mut line = meta.encode();
        line.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .expect("valid response")
}
