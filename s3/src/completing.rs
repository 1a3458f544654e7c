//! The answer to CompleteMultipartUpload, mended on its way out.
//!
//! Building the object can take a while, so s3s answers `200` at once with
//! an XML declaration, sends a space every 100 ms until the build ends,
//! then the result or the error. It serialises an error with a
//! declaration of its own, so the answer holds two, and an XML parser
//! refuses the second: a client cannot read why the upload failed
//! (botocore retries, then reports a bare `500 Internal Server Error`).
//! [`Completing`] drops that second declaration and gives an error its
//! request id, as [`crate::request_id::stamp_error`] does for every other
//! error answer, and logs it: its `200` status hides it from the log
//! line the front writes for errors.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of a CompleteMultipartUpload answer (see the module).
pub struct Completing {
    inner: s3s::Body,
    id: String,
    /// The opening declaration has gone by.
    declared: bool,
    /// The result or the error has gone by: the rest passes as it is.
    settled: bool,
}

impl Completing {
    /// Wraps `inner`, the body s3s made, for the request named `id`.
    pub fn new(inner: s3s::Body, id: &str) -> Completing {
        Completing {
            inner,
            id: id.to_string(),
            declared: false,
            settled: false,
        }
    }

    /// `chunk` as it should go out.
    fn mend(&mut self, chunk: Bytes) -> Bytes {
        let text = chunk.trim_ascii_start();
        if self.settled || text.is_empty() {
            return chunk;
        }
        if !self.declared && text.starts_with(b"<?xml") {
            self.declared = true;
            return chunk;
        }
        let payload = match text.strip_prefix(b"<?xml") {
            Some(rest) => match rest.windows(2).position(|w| w == b"?>") {
                Some(end) => rest[end + 2..].trim_ascii_start(),
                // s3s sends each part whole; one cut inside a
                // declaration goes as it is.
                None => return chunk,
            },
            None => text,
        };
        if payload.is_empty() {
            // The second declaration alone: the payload comes next.
            return chunk.slice_ref(payload);
        }
        self.settled = true;
        if payload.starts_with(b"<Error>") {
            let (code, message) = crate::request_id::code_and_message(payload);
            tracing::error!(%code, message, "CompleteMultipartUpload failed after its 200 began");
        }
        match crate::request_id::stamp_error(payload, &self.id) {
            Some(error) => error,
            None => chunk.slice_ref(payload),
        }
    }
}

impl Body for Completing {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(polled.map(|frame| {
            frame.map(|frame| match frame.into_data() {
                Ok(chunk) => Frame::data(self.mend(chunk)),
                Err(other) => other,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Mending can shorten the body or lengthen an error.
        SizeHint::default()
    }
}

/// Whether a request is CompleteMultipartUpload: `POST /bucket/key?uploadId=…`.
pub fn is_complete(method: &http::Method, uri: &http::Uri) -> bool {
    method == http::Method::POST
        && uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("uploadId=")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn mended(chunks: &[&'static str]) -> String {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        let stream = futures::stream::iter(frames);
        let inner = s3s::Body::http_body(http_body_util::StreamBody::new(stream));
        let out = Completing::new(inner, "00000000000000AB")
            .collect()
            .await
            .unwrap();
        String::from_utf8(out.to_bytes().to_vec()).unwrap()
    }

    const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

    #[tokio::test]
    async fn an_error_after_the_200_is_one_document_with_its_request_id() {
        let error = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code><Message>only 2 healthy volume(s), 3 needed</Message></Error>";
        let body = mended(&[DECL, " ", " ", error]).await;
        assert_eq!(body.matches("<?xml").count(), 1, "{body}");
        assert!(body.starts_with(DECL), "{body}");
        assert!(
            body.ends_with("<Error><Code>ServiceUnavailable</Code><Message>only 2 healthy volume(s), 3 needed</Message><RequestId>00000000000000AB</RequestId></Error>"),
            "{body}"
        );
        // The declaration in a frame of its own, the error in the next.
        let (decl, rest) = error.split_at(DECL.len());
        let split = mended(&[DECL, " ", decl, rest]).await;
        assert_eq!(split.matches("<?xml").count(), 1, "{split}");
        assert!(
            split.contains("<RequestId>00000000000000AB</RequestId>"),
            "{split}"
        );
    }

    #[tokio::test]
    async fn a_result_passes_as_it_is() {
        let result = "<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>\"e-2\"</ETag></CompleteMultipartUploadResult>";
        assert_eq!(mended(&[DECL, " ", result]).await, format!("{DECL} {result}"));
        // Declared again: that declaration goes, in the same frame or one
        // of its own.
        let again = format!("{DECL}{result}").leak();
        assert_eq!(mended(&[DECL, again]).await, format!("{DECL}{result}"));
        assert_eq!(
            mended(&[DECL, " ", DECL, result]).await,
            format!("{DECL} {result}")
        );
    }

    #[test]
    fn only_a_post_with_an_upload_id_is_a_completion() {
        let uri = |u: &str| u.parse::<http::Uri>().unwrap();
        assert!(is_complete(&http::Method::POST, &uri("/b/k?uploadId=abc")));
        assert!(!is_complete(&http::Method::POST, &uri("/b/k?uploads")));
        assert!(!is_complete(
            &http::Method::PUT,
            &uri("/b/k?uploadId=abc&partNumber=1")
        ));
        assert!(!is_complete(&http::Method::POST, &uri("/b?delete")));
    }
}
