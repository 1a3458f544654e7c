//! Request ids, and the words of an error answer.
//!
//! Every answer carries `x-amz-request-id`, as S3's do: SDKs show it with
//! an error (boto3's `ResponseMetadata.RequestId`, aws-cli's `--debug`),
//! and the gateway's log lines for the request carry the same id, so a
//! user's report can be found in the log. An error's XML gets it too, as
//! `<RequestId>`, and a `<Message>` where s3s gave none (its signature
//! checks and path parsing answer a bare code, which aws-cli shows as
//! "Unknown").

use bytes::Bytes;

/// A fresh id: 16 upper-case hex digits, the shape of S3's.
pub fn new() -> String {
    format!("{:016X}", rand::random::<u64>())
}

/// What a person can do about an error code s3s answers without a message.
fn default_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your secret key and signing method."
        }
        "InvalidURI" => "Could not parse the request's path as /bucket or /bucket/key.",
        "InvalidBucketName" => {
            "The bucket name is not valid: 3 to 63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit."
        }
        "KeyTooLongError" => "The key is longer than 1024 bytes, the most S3 allows.",
        "IncompleteBody" => "The body ended before the length the request announced.",
        "MethodNotAllowed" => "The method is not allowed on this resource.",
        "NotImplemented" => "This gateway does not implement what the request asks for.",
        "NoSuchKey" => "The specified key does not exist.",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against the schema S3 publishes for this request."
        }
        "MissingRequestBodyError" => "This request needs a body (an XML document), and it came without one.",
        _ => return None,
    })
}

/// The XML body of an error answer with `id` as its `<RequestId>` and, if
/// it had none, a `<Message>`; `None` if `xml` is not an S3 error (or
/// already names a request id).
pub fn stamp_error(xml: &[u8], id: &str) -> Option<Bytes> {
    let text = std::str::from_utf8(xml).ok()?;
    let end = text.rfind("</Error>")?;
    if text.contains("<RequestId>") {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 160);
    out.push_str(&text[..end]);
    if !text.contains("<Message>") {
        let code = between(text, "<Code>", "</Code>")?;
        if let Some(message) = default_message(code) {
            out.push_str("<Message>");
            out.push_str(message);
            out.push_str("</Message>");
        }
    }
    out.push_str("<RequestId>");
    out.push_str(id);
    out.push_str("</RequestId>");
    out.push_str(&text[end..]);
    Some(Bytes::from(out))
}

/// An error answer's `<Code>` and `<Message>` (empty where it has none),
/// for the log: as text, its XML escapes (`&apos;`, `&amp;`, …) undone.
pub fn code_and_message(xml: &[u8]) -> (String, String) {
    let Ok(text) = std::str::from_utf8(xml) else {
        return (String::new(), String::new());
    };
    let field = |open, close| unescape(between(text, open, close).unwrap_or_default());
    (field("<Code>", "</Code>"), field("<Message>", "</Message>"))
}

/// `text` with XML's five predefined entities made characters again
/// (`&amp;` last, so `&amp;lt;` stays `&lt;`).
fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text between the first `open` and the `close` after it.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

    #[test]
    fn the_log_reads_a_message_as_text() {
        let xml = "<Error><Code>InternalError</Code><Message>the gateway&apos;s log &amp;lt; &lt;here&gt;</Message></Error>";
        let (code, message) = code_and_message(xml.as_bytes());
        assert_eq!(code, "InternalError");
        assert_eq!(message, "the gateway's log &lt; <here>");
    }

    #[test]
    fn a_bare_code_gets_a_message_and_every_error_an_id() {
        let bare = format!("{DECL}<Error><Code>SignatureDoesNotMatch</Code></Error>");
        let stamped = stamp_error(bare.as_bytes(), "00000000000000AB").unwrap();
        let text = std::str::from_utf8(&stamped).unwrap();
        assert!(text.starts_with(DECL), "{text}");
        assert!(
            text.contains("<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated"),
            "{text}"
        );
        assert!(
            text.ends_with("<RequestId>00000000000000AB</RequestId></Error>"),
            "{text}"
        );

        let with_message = format!(
            "{DECL}<Error><Code>NoSuchBucket</Code><Message>the bucket b does not exist</Message></Error>"
        );
        let text = String::from_utf8(stamp_error(with_message.as_bytes(), "X").unwrap().to_vec()).unwrap();
        assert_eq!(
            text,
            format!("{DECL}<Error><Code>NoSuchBucket</Code><Message>the bucket b does not exist</Message><RequestId>X</RequestId></Error>")
        );

        // A code with no message of ours keeps its bare code.
        let unknown = format!("{DECL}<Error><Code>Whatever</Code></Error>");
        let text = String::from_utf8(stamp_error(unknown.as_bytes(), "X").unwrap().to_vec()).unwrap();
        assert_eq!(
            text,
            format!("{DECL}<Error><Code>Whatever</Code><RequestId>X</RequestId></Error>")
        );
    }

    #[test]
    fn other_bodies_are_left_alone() {
        assert_eq!(stamp_error(b"not xml at all", "X"), None);
        assert_eq!(stamp_error(b"<ListBucketResult></ListBucketResult>", "X"), None);
        assert_eq!(stamp_error(&[0xff, 0xfe], "X"), None);
        let stamped = "<Error><Code>A</Code><RequestId>Y</RequestId></Error>";
        assert_eq!(stamp_error(stamped.as_bytes(), "X"), None);
        assert!(new().len() == 16 && new().chars().all(|c| c.is_ascii_hexdigit()));
    }
}
