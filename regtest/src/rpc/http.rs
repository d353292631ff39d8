//! HTTP/1.1 framing of the JSON-RPC server: bounded reads of heads and bodies (chunked
//! included), keep-alive connections, responses with Core's status codes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::limits::{Limits, Slot, Slots, SMALL_INPUT};

use super::jsonrpc::*;
use super::*;

/// Serve JSON-RPC on `listener` until `ctx.shutdown` is triggered.
///
/// Each connection runs in its own task; a failing connection is closed and logged, never
/// anything more.
pub async fn serve(listener: TcpListener, ctx: RpcContext, creds: RpcCredentials) {
    serve_with(listener, ctx, creds, Limits::default()).await;
}

/// What every connection of the RPC server shares.
pub(crate) struct Bounds {
    pub(crate) max_body: usize,
    /// Permits to read and handle a body above [`SMALL_INPUT`].
    pub(crate) large: Arc<Semaphore>,
}

/// [`serve`] with other limits.
pub async fn serve_with(
    listener: TcpListener,
    ctx: RpcContext,
    creds: RpcCredentials,
    limits: Limits,
) {
    let ctx = Arc::new(ctx);
    let creds = Arc::new(creds);
    let shutdown = ctx.shutdown.clone();
    // One slot table for every peer: RPC clients authenticate, so per-IP shares buy nothing.
    let slots = Slots::new(limits.rpc_connections, limits.rpc_connections);
    let bounds = Arc::new(Bounds {
        max_body: limits.max_body,
        large: Arc::new(Semaphore::new(limits.large_inputs.max(1))),
    });
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = slots.admit(peer.ip(), true) else {
                    continue;
                };
                let ctx = ctx.clone();
                let creds = creds.clone();
                let bounds = bounds.clone();
                // Not cancelled on shutdown: the reply to `stop` must still go out. The
                // runtime's shutdown ends whatever is left.
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, ctx, creds, bounds, slot).await {
                        debug!(target: "btcmpc_regtest::rpc", %peer, "connection closed: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                warn!(target: "btcmpc_regtest::rpc", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One parsed HTTP request.
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) keep_alive: bool,
    pub(crate) body: Vec<u8>,
    /// Held while a body above [`SMALL_INPUT`] is read and handled.
    pub(crate) _large: Option<OwnedSemaphorePermit>,
}

pub(crate) enum ReadOutcome {
    Request(HttpRequest),
    Closed,
    /// Reply with this status and close.
    Bad(u16, &'static str),
    /// A POST whose credentials are refused: answer 401 and close, the body left unread.
    Unauthorized,
}

/// Read one request. The credentials of a POST are checked once its headers are in, before
/// anything of its body is read, so an unauthenticated client cannot make the server hold
/// (or allocate) a body of up to [`MAX_BODY`] bytes.
pub(crate) async fn read_request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    creds: &RpcCredentials,
    bounds: &Bounds,
) -> std::io::Result<ReadOutcome> {
    let mut head_len = 0usize;
    let mut line = Vec::new();
    // Wait for the request line (skipping stray empty lines between requests).
    let request_line = loop {
        line.clear();
        let n =
            match tokio::time::timeout(IDLE_TIMEOUT, read_line_capped(reader, &mut line, MAX_HEAD))
                .await
            {
                Ok(r) => r?,
                Err(_) => return Ok(ReadOutcome::Closed),
            };
        if n == 0 {
            return Ok(ReadOutcome::Closed);
        }
        if line.last() != Some(&b'\n') {
            // 400, as Core's HTTP server (libevent) answers an oversized head.
            return Ok(ReadOutcome::Bad(400, "request line too long"));
        }
        head_len += n;
        let text = String::from_utf8_lossy(&line).trim().to_string();
        if !text.is_empty() {
            break text;
        }
        if head_len > MAX_HEAD {
            return Ok(ReadOutcome::Bad(400, "bad request"));
        }
    };
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let _target = parts.next();
    let version = parts.next().unwrap_or_default().to_string();
    if !version.starts_with("HTTP/1.") {
        return Ok(ReadOutcome::Bad(400, "bad request line"));
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut content_length: Option<usize> = None;
    let mut authorization = None;
    let mut chunked = false;
    loop {
        line.clear();
        let n = match tokio::time::timeout_at(
            deadline,
            read_line_capped(reader, &mut line, MAX_HEAD - head_len.min(MAX_HEAD)),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Ok(ReadOutcome::Closed),
        };
        if n == 0 {
            return Ok(ReadOutcome::Closed);
        }
        head_len += n;
        if line.last() != Some(&b'\n') || head_len > MAX_HEAD {
            return Ok(ReadOutcome::Bad(400, "request header fields too large"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else {
            return Ok(ReadOutcome::Bad(400, "bad header line"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => match value.parse::<usize>() {
                Ok(l) => content_length = Some(l),
                Err(_) => return Ok(ReadOutcome::Bad(400, "bad content-length")),
            },
            "connection" => {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
            "authorization" => authorization = Some(value.to_string()),
            // Core's HTTP server (libevent) reads chunked bodies: so do we.
            "transfer-encoding" if value.eq_ignore_ascii_case("chunked") => chunked = true,
            "transfer-encoding" => return Ok(ReadOutcome::Bad(400, "bad transfer-encoding")),
            _ => {}
        }
    }
    let len = content_length.unwrap_or(0);
    // The size first, as Core's HTTP server (libevent's max body size answers 413 before the
    // handler checks credentials), then the credentials before the body is read.
    if len > bounds.max_body {
        return Ok(ReadOutcome::Bad(413, "request body too large"));
    }
    if method == "POST" && !creds.check(authorization.as_deref()) {
        return Ok(ReadOutcome::Unauthorized);
    }
    if chunked {
        // The length is known only once read: counted against the large-input bound.
        let large =
            match tokio::time::timeout_at(deadline, bounds.large.clone().acquire_owned()).await {
                Ok(Ok(p)) => Some(p),
                Ok(Err(_)) | Err(_) => return Ok(ReadOutcome::Bad(503, "server busy")),
            };
        let body =
            match tokio::time::timeout_at(deadline, read_chunked_body(reader, bounds.max_body))
                .await
            {
                Ok(r) => match r? {
                    Chunked::Body(b) => b,
                    Chunked::TooLarge => {
                        return Ok(ReadOutcome::Bad(413, "request body too large"))
                    }
                    Chunked::Bad => return Ok(ReadOutcome::Bad(400, "bad chunked body")),
                    Chunked::Closed => return Ok(ReadOutcome::Closed),
                },
                Err(_) => return Ok(ReadOutcome::Closed),
            };
        return Ok(ReadOutcome::Request(HttpRequest {
            method,
            keep_alive,
            body,
            _large: large,
        }));
    }
    let large = if len > SMALL_INPUT {
        match tokio::time::timeout_at(deadline, bounds.large.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            Ok(Err(_)) | Err(_) => return Ok(ReadOutcome::Bad(503, "server busy")),
        }
    } else {
        None
    };
    // Grow the buffer as the bytes arrive rather than trusting the declared length.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let mut limited = (&mut *reader).take(len as u64);
    match tokio::time::timeout_at(deadline, limited.read_to_end(&mut body)).await {
        Ok(r) => {
            r?;
        }
        Err(_) => return Ok(ReadOutcome::Closed),
    }
    if body.len() != len {
        // The client closed before sending the whole body.
        return Ok(ReadOutcome::Closed);
    }
    Ok(ReadOutcome::Request(HttpRequest {
        method,
        keep_alive,
        body,
        _large: large,
    }))
}

pub(crate) enum Chunked {
    Body(Vec<u8>),
    TooLarge,
    Bad,
    Closed,
}

/// Read a `Transfer-Encoding: chunked` body (RFC 9112 section 7.1) of at most `max` bytes:
/// hex sizes (extensions after `;` ignored), each chunk followed by CRLF, a zero-size chunk,
/// then trailer lines up to an empty one.
pub(crate) async fn read_chunked_body(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    max: usize,
) -> std::io::Result<Chunked> {
    const MAX_LINE: usize = 1024;
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = read_line_capped(reader, &mut line, MAX_LINE).await?;
        if n == 0 {
            return Ok(Chunked::Closed);
        }
        if line.last() != Some(&b'\n') {
            return Ok(Chunked::Bad);
        }
        let text = String::from_utf8_lossy(&line);
        let size_hex = text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            return Ok(Chunked::Bad);
        };
        if size == 0 {
            break;
        }
        if size > max.saturating_sub(body.len()) {
            return Ok(Chunked::TooLarge);
        }
        let start = body.len();
        let mut limited = (&mut *reader).take(size as u64);
        limited.read_to_end(&mut body).await?;
        if body.len() - start != size {
            return Ok(Chunked::Closed);
        }
        line.clear();
        read_line_capped(reader, &mut line, 2).await?;
        if line != b"\r\n" && line != b"\n" {
            return Ok(Chunked::Bad);
        }
    }
    // Trailers, up to an empty line.
    let mut trailers = 0usize;
    loop {
        line.clear();
        let n = read_line_capped(reader, &mut line, MAX_LINE).await?;
        if n == 0 {
            return Ok(Chunked::Closed);
        }
        trailers += n;
        if line.last() != Some(&b'\n') || trailers > MAX_HEAD {
            return Ok(Chunked::Bad);
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Chunked::Body(body));
        }
    }
}

/// Read up to and including `\n`, at most `cap` bytes; returns the number of bytes read.
pub(crate) async fn read_line_capped(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(total);
        }
        let room = cap.saturating_sub(total);
        let window = &buf[..buf.len().min(room)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&window[..=i]);
            reader.consume(i + 1);
            return Ok(total + i + 1);
        }
        let n = window.len();
        out.extend_from_slice(window);
        reader.consume(n);
        total += n;
        if total >= cap {
            return Ok(total);
        }
    }
}

pub(crate) fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub(crate) async fn write_response(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    status: u16,
    body: &[u8],
    keep_alive: bool,
    extra: &str,
) -> std::io::Result<()> {
    let content_type = if body.first() == Some(&b'{') || body.first() == Some(&b'[') {
        "application/json"
    } else {
        "text/html; charset=ISO-8859-1"
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n{extra}\r\n",
        status_text(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    tokio::time::timeout(REQUEST_TIMEOUT, w.write_all(&out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}

pub(crate) async fn connection(
    stream: TcpStream,
    ctx: Arc<RpcContext>,
    creds: Arc<RpcCredentials>,
    bounds: Arc<Bounds>,
    slot: Slot,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    loop {
        // Evicted (to admit a new client) only while waiting for a request.
        let read = tokio::select! {
            _ = slot.evicted() => {
                debug!(target: "btcmpc_regtest::rpc", "closed to make room for a new connection");
                return Ok(());
            }
            r = read_request(&mut reader, &creds, &bounds) => r?,
        };
        slot.touch();
        let req = match read {
            ReadOutcome::Closed => return Ok(()),
            ReadOutcome::Unauthorized => {
                warn!(target: "btcmpc_regtest::rpc", "incorrect rpc password");
                write_response(
                    &mut w,
                    401,
                    b"",
                    false,
                    "WWW-Authenticate: Basic realm=\"jsonrpc\"\r\n",
                )
                .await?;
                return Ok(());
            }
            ReadOutcome::Bad(status, why) => {
                write_response(&mut w, status, why.as_bytes(), false, "").await?;
                return Ok(());
            }
            ReadOutcome::Request(r) => r,
        };
        if req.method != "POST" {
            write_response(
                &mut w,
                405,
                b"JSONRPC server handles only POST requests",
                req.keep_alive,
                "",
            )
            .await?;
        } else {
            let (status, reply) = handle_body(&ctx, &req.body).await;
            let body = match reply {
                Some(v) => {
                    let mut s = v.to_string().into_bytes();
                    s.push(b'\n');
                    s
                }
                None => Vec::new(),
            };
            write_response(&mut w, status, &body, req.keep_alive, "").await?;
        }
        if !req.keep_alive {
            return Ok(());
        }
    }
}
