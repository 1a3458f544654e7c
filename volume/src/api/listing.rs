//! `GET /-/listing`: every blob in key order, as the compact binary frames
//! of `trove_common::protocol::listing`, streamed from the volume's
//! sorted key set (memory does not grow with the blob count), ending
//! with the end frame.

use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use trove_common::protocol::listing::CONTENT_TYPE;

pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let listed = store.listing(|chunk| tx.blocking_send(Ok(Bytes::from(chunk))).is_ok());
        if let Err(e) = listed {
            // The answer breaks off without its end frame, so the reader
            // knows the listing is not whole.
            tracing::error!(error = %e, "listing failed");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let chunks = ReceiverStream::new(rx);
    Response::builder()
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Body::from_stream(chunks))
        .expect("valid response")
}
