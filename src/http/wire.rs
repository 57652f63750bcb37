//! The connection under actix: every error answer in the contract's JSON
//! (SPEC §9), the ones actix writes itself included.
//!
//! actix-http answers a few conditions below the application, with an
//! empty body: a request head that does not arrive within
//! `client_request_timeout` (408: a slow header, or a paused node's
//! connections when it resumes), a request that is not valid HTTP (400), a
//! head too large (431). No hook reaches those, so [`JsonErrors`] wraps
//! each connection and, when a response head of status 400 or above with
//! `content-length: 0` is written, writes it with the JSON error of its
//! status instead. creditd itself never answers an error without a body,
//! so nothing else is touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::{ErrorBody, ErrorCode, ErrorDetail};

/// A connection whose empty error answers get their JSON body.
pub struct JsonErrors<T> {
    io: T,
    /// A rewritten write in progress: the bytes to send, how many are sent,
    /// and how many of the caller's bytes they stand for.
    rewriting: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonErrors<T> {
    pub fn new(io: T) -> Self {
        Self { io, rewriting: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewriting.is_none() {
            match with_json_body(buf) {
                Some(rewritten) => this.rewriting = Some((rewritten, 0, buf.len())),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        // The caller writes the same bytes again until they are taken: the
        // rewritten ones are sent whole first, then all of the caller's count.
        if let Some((bytes, sent, stands_for)) = &mut this.rewriting {
            while *sent < bytes.len() {
                match Pin::new(&mut this.io).poll_write(cx, &bytes[*sent..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *sent += n,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let taken = *stands_for;
            this.rewriting = None;
            return Poll::Ready(Ok(taken));
        }
        Poll::Ready(Ok(0))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// `bytes` with the response at their start rewritten to carry the JSON
/// error of its status, when that response is an error with an empty body;
/// `None` for anything else (a body, a success, a partial head).
pub fn with_json_body(bytes: &[u8]) -> Option<Vec<u8>> {
    // The common case, a success, costs a few byte comparisons: "HTTP/1.1 2…".
    if !bytes.starts_with(b"HTTP/1.") || bytes.get(9).is_none_or(|digit| *digit < b'4') {
        return None;
    }
    let head_end = bytes.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    if status < 400 {
        return None;
    }
    let headers: Vec<&str> = lines.collect();
    let named = |line: &str, name: &str| {
        line.split_once(':').is_some_and(|(header, _)| header.trim().eq_ignore_ascii_case(name))
    };
    let empty = headers.iter().any(|line| {
        named(line, "content-length") && line.split_once(':').is_some_and(|(_, value)| value.trim() == "0")
    });
    if !empty || headers.iter().any(|line| named(line, "content-type") || named(line, "transfer-encoding")) {
        return None;
    }
    let (code, message) = match status {
        408 => (ErrorCode::RequestTimeout, "the request did not arrive in time; the connection is closed"),
        413 => (ErrorCode::PayloadTooLarge, "the request is too large"),
        431 => (ErrorCode::InvalidRequest, "request: the headers are too large"),
        404 => (ErrorCode::NotFound, "no such route"),
        405 => (ErrorCode::MethodNotAllowed, "method not allowed"),
        status if status < 500 => (ErrorCode::InvalidRequest, "request: not a valid HTTP/1.1 request"),
        _ => (ErrorCode::Overloaded, "the server could not answer this request"),
    };
    let body = serde_json::to_vec(&ErrorBody { error: ErrorDetail { code, message: message.into() } }).ok()?;
    let mut rewritten = Vec::with_capacity(bytes.len() + body.len() + 64);
    rewritten.extend_from_slice(status_line.as_bytes());
    rewritten.extend_from_slice(b"\r\n");
    for line in headers.iter().filter(|line| !named(line, "content-length")) {
        rewritten.extend_from_slice(line.as_bytes());
        rewritten.extend_from_slice(b"\r\n");
    }
    rewritten.extend_from_slice(
        format!("content-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(),
    );
    rewritten.extend_from_slice(&body);
    rewritten.extend_from_slice(&bytes[head_end + 4..]);
    Some(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(bytes: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(bytes.to_vec()).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        (head.to_owned(), serde_json::from_str(body).expect("a JSON body"))
    }

    #[test]
    fn actix_own_empty_errors_get_the_contract_json() {
        let timeout = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\ndate: Thu, 03 Dec 2026 16:00:00 GMT\r\n\r\n";
        let (head, body) = parts(&with_json_body(timeout).expect("rewritten"));
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{head}");
        assert!(head.contains("connection: close") && head.contains("date: Thu"), "other headers stay: {head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|value| value.parse().ok())
            .expect("a length");
        assert_eq!(length, serde_json::to_vec(&body).expect("JSON").len());
        assert_eq!(body["error"]["code"], "request_timeout");
        let bad = with_json_body(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").expect("rewritten");
        assert_eq!(parts(&bad).1["error"]["code"], "invalid_request");
    }

    #[test]
    fn everything_else_is_written_as_it_is() {
        let json = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
        assert_eq!(with_json_body(json), None, "an error with a body");
        assert_eq!(with_json_body(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None, "a success");
        assert_eq!(with_json_body(b"HTTP/1.1 408 Request Timeout\r\ncontent-len"), None, "a partial head");
        assert_eq!(with_json_body(b"{\"a\":1}"), None, "a body");
        let chunked = b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(with_json_body(chunked), None);
    }

    #[test]
    fn what_follows_the_response_is_kept() {
        let rewritten =
            with_json_body(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK").expect("rewritten");
        assert!(rewritten.ends_with(b"}HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&rewritten));
    }
}
