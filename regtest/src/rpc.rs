//! A Bitcoin Core style JSON-RPC server over HTTP/1.1 for the embedded node.
//!
//! It implements the subset of Core's RPC that btcmpc and its tests need (see REGTEST.md) with
//! Core's parameter shapes, result shapes, error codes and HTTP status codes (`httprpc.cpp`):
//! JSON-RPC 1.x requests that fail get HTTP 500 (404 for an unknown method, 400 for an invalid
//! request) with the error object in the body; JSON-RPC 2.0 requests and batches always get
//! HTTP 200; a wrong or missing password gets 401. Connections are kept alive.
//!
//! Besides Core's methods it has one of its own, `faucet ADDRESS AMOUNT_BTC`, which pays from
//! the node's faucet key and mines one block (the embedded node has no wallet).
//!
//! Every read has a timeout, headers are capped at 64 KiB and bodies at [`MAX_BODY`] (HTTP 413,
//! as Core's `evhttp_set_max_body_size`) and a body at [`crate::electrum::MAX_JSON_TOKENS`]
//! JSON values (HTTP 400 with a JSON-RPC error), which bounds a batch (Core counts no batch);
//! bodies above 64 KiB are read and handled a few at a time ([`Limits::large_inputs`]).
//! Connections are capped at [`Limits::rpc_connections`]; a new client is admitted by closing
//! the least recently active idle connection (policy of [`crate::limits`]). So a slow, silent
//! or malicious client only ever costs its own connection.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::hashes::Hash as _;
use bitcoin::{
    Address, Amount, Block, BlockHash, FeeRate, Network, OutPoint, Script, ScriptBuf, Transaction,
    Txid,
};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::electrum::MAX_JSON_TOKENS;
use crate::faucet::Faucet;
use crate::limits::{json_within, Limits, Slot, Slots, SMALL_INPUT};
use crate::node::{MempoolEntry, Node, NodeError, Reject};
use crate::server::Shutdown;

pub use crate::limits::MAX_BODY;
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// How long an idle kept-alive connection stays open (Core's `-rpcservertimeout` default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a whole request once it started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Core's RPC error codes used here.
mod code {
    pub const MISC_ERROR: i64 = -1;
    pub const TYPE_ERROR: i64 = -3;
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub const WALLET_INSUFFICIENT_FUNDS: i64 = -6;
    pub const INVALID_PARAMETER: i64 = -8;
    pub const DESERIALIZATION_ERROR: i64 = -22;
    pub const VERIFY_ERROR: i64 = -25;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const PARSE_ERROR: i64 = -32700;
}

/// The credentials a server accepts, as `user:password` strings.
#[derive(Clone)]
pub struct RpcCredentials {
    accepted: Vec<String>,
}

impl std::fmt::Debug for RpcCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCredentials")
            .field("count", &self.accepted.len())
            .finish()
    }
}

impl RpcCredentials {
    /// Accept `user:password` pairs (for the cookie: `__cookie__:HEX`).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        RpcCredentials {
            accepted: pairs.into_iter().map(|(u, p)| format!("{u}:{p}")).collect(),
        }
    }

    fn check(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let Some(b64) = h.trim().strip_prefix("Basic ") else {
            return false;
        };
        let Some(decoded) = crate::rpc_client::base64_decode(b64.trim()) else {
            return false;
        };
        // Compare every candidate in full so the time does not depend on where they differ.
        self.accepted.iter().fold(false, |ok, cand| {
            let same = cand.len() == decoded.len()
                && cand
                    .as_bytes()
                    .iter()
                    .zip(&decoded)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            ok | same
        })
    }
}

/// What the RPC handlers share.
#[derive(Debug, Clone)]
pub struct RpcContext {
    /// The node.
    pub node: Node,
    /// The faucet, if this node has one.
    pub faucet: Option<Arc<Faucet>>,
    /// Triggered by the `stop` method.
    pub shutdown: Shutdown,
}

/// A JSON-RPC error: Core's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Core's error code.
    pub code: i64,
    /// The message.
    pub message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl From<Reject> for RpcError {
    fn from(r: Reject) -> Self {
        RpcError::new(i64::from(r.code), send_error_message(&r))
    }
}

/// The message `sendrawtransaction` prints for a refusal: the validation state's text, reject
/// reason and details. Core 31's `HandleATMPError` sets the error string to
/// `state.ToString()` for every refusal, missing inputs included (-25
/// `bad-txns-inputs-missingorspent`); its generic `TransactionErrorString` ("Inputs missing or
/// spent") is used only when that string is empty, which it never is for a mempool refusal.
pub(crate) fn send_error_message(r: &Reject) -> String {
    r.message()
}

/// Serve JSON-RPC on `listener` until `ctx.shutdown` is triggered.
///
/// Each connection runs in its own task; a failing connection is closed and logged, never
/// anything more.
pub async fn serve(listener: TcpListener, ctx: RpcContext, creds: RpcCredentials) {
    serve_with(listener, ctx, creds, Limits::default()).await;
}

/// What every connection of the RPC server shares.
struct Bounds {
    max_body: usize,
    /// Permits to read and handle a body above [`SMALL_INPUT`].
    large: Arc<Semaphore>,
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
struct HttpRequest {
    method: String,
    keep_alive: bool,
    body: Vec<u8>,
    /// Held while a body above [`SMALL_INPUT`] is read and handled.
    _large: Option<OwnedSemaphorePermit>,
}

enum ReadOutcome {
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
async fn read_request(
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

enum Chunked {
    Body(Vec<u8>),
    TooLarge,
    Bad,
    Closed,
}

/// Read a `Transfer-Encoding: chunked` body (RFC 9112 section 7.1) of at most `max` bytes:
/// hex sizes (extensions after `;` ignored), each chunk followed by CRLF, a zero-size chunk,
/// then trailer lines up to an empty one.
async fn read_chunked_body(
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
async fn read_line_capped(
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

fn status_text(status: u16) -> &'static str {
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

async fn write_response(
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

async fn connection(
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Legacy,
    V2,
}

struct JsonRequest {
    id: Option<Value>,
    method: String,
    params: Value,
    version: Version,
}

fn parse_request(v: &Value) -> Result<JsonRequest, (RpcError, Option<Value>, Version)> {
    let Some(obj) = v.as_object() else {
        return Err((
            RpcError::new(code::INVALID_REQUEST, "Invalid Request object"),
            None,
            Version::Legacy,
        ));
    };
    let id = obj.get("id").cloned();
    let version = match obj.get("jsonrpc") {
        None => Version::Legacy,
        Some(Value::String(s)) if s == "2.0" => Version::V2,
        Some(Value::String(_)) => Version::Legacy,
        Some(_) => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "jsonrpc field must be a string"),
                id,
                Version::Legacy,
            ))
        }
    };
    let method = match obj.get("method") {
        None => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "Missing method"),
                id,
                version,
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "Method must be a string"),
                id,
                version,
            ))
        }
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(p @ (Value::Array(_) | Value::Object(_))) => p.clone(),
        Some(_) => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "Params must be an array or object"),
                id,
                version,
            ))
        }
    };
    Ok(JsonRequest {
        id,
        method,
        params,
        version,
    })
}

fn reply(result: Result<Value, RpcError>, id: Option<Value>, version: Version) -> Value {
    let id = id.unwrap_or(Value::Null);
    match (version, result) {
        (Version::Legacy, Ok(r)) => json!({"result": r, "error": null, "id": id}),
        (Version::Legacy, Err(e)) => json!({"result": null, "error": e.to_json(), "id": id}),
        (Version::V2, Ok(r)) => json!({"jsonrpc": "2.0", "result": r, "id": id}),
        (Version::V2, Err(e)) => json!({"jsonrpc": "2.0", "error": e.to_json(), "id": id}),
    }
}

fn http_status_for(e: &RpcError) -> u16 {
    match e.code {
        code::INVALID_REQUEST => 400,
        code::METHOD_NOT_FOUND => 404,
        _ => 500,
    }
}

/// Execute one HTTP body: (HTTP status, reply body or none for 204).
async fn handle_body(ctx: &Arc<RpcContext>, body: &[u8]) -> (u16, Option<Value>) {
    if !json_within(body, MAX_JSON_TOKENS) {
        let e = RpcError::new(
            code::INVALID_REQUEST,
            format!("request too complex (more than {MAX_JSON_TOKENS} JSON values)"),
        );
        return (400, Some(reply(Err(e), None, Version::Legacy)));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let e = RpcError::new(code::PARSE_ERROR, "Parse error");
            return (500, Some(reply(Err(e), None, Version::Legacy)));
        }
    };
    match value {
        Value::Object(_) => match parse_request(&value) {
            Err((e, id, version)) => {
                let status = if version == Version::V2 {
                    200
                } else {
                    http_status_for(&e)
                };
                (status, Some(reply(Err(e), id, version)))
            }
            Ok(req) => {
                let notification = req.version == Version::V2 && req.id.is_none();
                let result = execute(ctx, req.method, req.params).await;
                if notification {
                    return (204, None);
                }
                let status = match (&result, req.version) {
                    (Err(e), Version::Legacy) => http_status_for(e),
                    _ => 200,
                };
                (status, Some(reply(result, req.id, req.version)))
            }
        },
        // No count of its own for a batch, as in Core: the body's size and its number of JSON
        // values bound it.
        Value::Array(items) => {
            let mut replies = Vec::with_capacity(items.len());
            let total = items.len();
            for item in items {
                match parse_request(&item) {
                    Err((e, id, version)) => replies.push(reply(Err(e), id, version)),
                    Ok(req) => {
                        let notification = req.version == Version::V2 && req.id.is_none();
                        let result = execute(ctx, req.method, req.params).await;
                        if !notification {
                            replies.push(reply(result, req.id, req.version));
                        }
                    }
                }
            }
            if replies.is_empty() && total > 0 {
                (204, None)
            } else {
                (200, Some(Value::Array(replies)))
            }
        }
        _ => {
            let e = RpcError::new(code::PARSE_ERROR, "Top-level object parse error");
            (500, Some(reply(Err(e), None, Version::Legacy)))
        }
    }
}

async fn execute(ctx: &Arc<RpcContext>, method: String, params: Value) -> Result<Value, RpcError> {
    // Methods that can hold the chain for long (mining, reorgs, whole blocks) run on the
    // blocking pool; the rest are short and run inline, which saves a thread hop per request.
    let heavy = matches!(
        method.as_str(),
        "generatetoaddress"
            | "generatetodescriptor"
            | "generateblock"
            | "invalidateblock"
            | "reconsiderblock"
            | "faucet"
            | "getblock"
            | "getrawmempool"
            | "stop"
    );
    if !heavy {
        return dispatch(ctx, &method, params);
    }
    let ctx = ctx.clone();
    match tokio::task::spawn_blocking(move || dispatch(&ctx, &method, params)).await {
        Ok(r) => r,
        Err(e) => Err(RpcError::new(
            code::MISC_ERROR,
            format!("internal error: {e}"),
        )),
    }
}

/// Positional parameters after mapping named ones.
struct Params<'a> {
    method: &'a str,
    usage: &'a str,
    names: &'a [&'a str],
    vals: Vec<Value>,
}

impl<'a> Params<'a> {
    fn new(
        method: &'a str,
        names: &'a [&'a str],
        required: usize,
        usage: &'a str,
        raw: Value,
    ) -> Result<Self, RpcError> {
        let vals = match raw {
            Value::Array(v) => v,
            Value::Object(map) => {
                let mut vals = vec![Value::Null; names.len()];
                let mut last = 0;
                for (k, v) in map {
                    let Some(i) = names.iter().position(|n| *n == k) else {
                        return Err(RpcError::new(
                            code::INVALID_PARAMETER,
                            format!("Unknown named parameter {k}"),
                        ));
                    };
                    last = last.max(i + 1);
                    vals[i] = v;
                }
                vals.truncate(last);
                vals
            }
            _ => Vec::new(),
        };
        let given = vals.iter().rposition(|v| !v.is_null()).map_or(0, |i| i + 1);
        if vals.len() > names.len() || given < required {
            return Err(RpcError::new(code::MISC_ERROR, format!("{method} {usage}")));
        }
        // Required parameters may not be null.
        if vals.iter().take(required).any(Value::is_null) {
            return Err(RpcError::new(code::MISC_ERROR, format!("{method} {usage}")));
        }
        Ok(Params {
            method,
            usage,
            names,
            vals,
        })
    }

    fn get(&self, i: usize) -> Option<&Value> {
        self.vals.get(i).filter(|v| !v.is_null())
    }

    fn name(&self, i: usize) -> &str {
        self.names.get(i).copied().unwrap_or("param")
    }

    fn required(&self, i: usize) -> Result<&Value, RpcError> {
        self.get(i).ok_or_else(|| {
            RpcError::new(code::MISC_ERROR, format!("{} {}", self.method, self.usage))
        })
    }

    fn u64_opt(&self, i: usize) -> Result<Option<u64>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(n)),
                None if v.is_number() => Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    format!("{} out of range", self.name(i)),
                )),
                None => Err(type_error(v, "number")),
            },
        }
    }

    fn i64_opt(&self, i: usize) -> Result<Option<i64>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| type_error(v, "number")),
        }
    }

    fn str(&self, i: usize) -> Result<&str, RpcError> {
        let v = self.required(i)?;
        v.as_str().ok_or_else(|| type_error(v, "string"))
    }

    fn str_opt(&self, i: usize) -> Result<Option<&str>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| type_error(v, "string")),
        }
    }

    fn bool_opt(&self, i: usize) -> Result<Option<bool>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| type_error(v, "bool")),
        }
    }

    /// A verbosity given as a bool or a number (Core's `ParseVerbosity`).
    fn verbosity(&self, i: usize, default: u64) -> Result<u64, RpcError> {
        match self.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(u64::from(*b)),
            Some(v) => v.as_u64().ok_or_else(|| type_error(v, "number")),
        }
    }

    fn hash<T: FromStr + bitcoin::hashes::Hash>(&self, i: usize) -> Result<T, RpcError> {
        let s = self.str(i)?;
        parse_hash::<T>(s, self.name(i))
    }

    /// As [`Params::hash`], naming the value `name` in errors where Core's code does so
    /// under another name than the parameter's (`getblockheader` parses `blockhash` as `hash`).
    fn hash_as<T: FromStr + bitcoin::hashes::Hash>(
        &self,
        i: usize,
        name: &str,
    ) -> Result<T, RpcError> {
        parse_hash::<T>(self.str(i)?, name)
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(v: &Value, expected: &str) -> RpcError {
    RpcError::new(
        code::TYPE_ERROR,
        format!(
            "JSON value of type {} is not of expected type {expected}",
            json_type(v)
        ),
    )
}

/// Core's `ParseHashV`.
fn parse_hash<T: FromStr + bitcoin::hashes::Hash>(s: &str, name: &str) -> Result<T, RpcError> {
    if s.len() != 64 {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        ));
    }
    T::from_str(s).map_err(|_| {
        RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        )
    })
}

/// Core's `AmountFromValue` (BTC as a number or a string, at most 8 decimals).
fn amount_from_value(v: &Value) -> Result<Amount, RpcError> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => return Err(type_error(other, "number")),
    };
    let amount = Amount::from_str_in(&text, bitcoin::Denomination::Bitcoin)
        .map_err(|_| RpcError::new(code::TYPE_ERROR, "Invalid amount"))?;
    if amount > Amount::MAX_MONEY {
        return Err(RpcError::new(code::TYPE_ERROR, "Amount out of range"));
    }
    Ok(amount)
}

fn btc(a: Amount) -> Value {
    json!(a.to_btc())
}

/// A fee rate in BTC/kvB, as Core prints fee rates.
fn btc_per_kvb(rate: FeeRate) -> Value {
    // 1 sat/kwu = 4 sat/kvB.
    let sat_per_kvb = rate.to_sat_per_kwu().saturating_mul(4);
    json!(Amount::from_sat(sat_per_kvb).to_btc())
}

/// A fee rate from Core's BTC/kvB parameter.
fn fee_rate_from_btc_per_kvb(v: &Value) -> Result<FeeRate, RpcError> {
    let amount = amount_from_value(v)?;
    if amount >= Amount::ONE_BTC {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "Fee rates larger than or equal to 1BTC/kvB are not accepted",
        ));
    }
    Ok(FeeRate::from_sat_per_kwu(amount.to_sat() / 4))
}

fn parse_address(s: &str) -> Result<Address, RpcError> {
    Address::from_str(s)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

fn decode_tx(hex_str: &str) -> Option<Transaction> {
    let bytes = hex::decode(hex_str).ok()?;
    deserialize::<Transaction>(&bytes).ok()
}

fn node_error(e: NodeError) -> RpcError {
    match e {
        NodeError::BlockNotFound(_) => {
            RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found")
        }
        NodeError::Genesis(_) => RpcError::new(
            code::INVALID_PARAMETER,
            "Cannot invalidate the genesis block",
        ),
        NodeError::BlockRefused(r) => RpcError::new(code::VERIFY_ERROR, r.message()),
        other => RpcError::new(code::MISC_ERROR, other.to_string()),
    }
}

/// Run one method (blocking: call it off the async executor).
///
/// # Errors
///
/// The Core-style [`RpcError`] of the method.
pub fn dispatch(ctx: &RpcContext, method: &str, raw: Value) -> Result<Value, RpcError> {
    let node = &ctx.node;
    match method {
        "getblockcount" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(json!(node.tip().height))
        }
        "getbestblockhash" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(json!(node.tip().hash.to_string()))
        }
        "getblockchaininfo" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(blockchain_info(node))
        }
        "getblockhash" => {
            let p = Params::new(method, &["height"], 1, "height", raw)?;
            let h = p.i64_opt(0)?.unwrap_or(-1);
            let hash = u32::try_from(h)
                .ok()
                .and_then(|h| node.block_hash(h))
                .ok_or_else(|| {
                    RpcError::new(code::INVALID_PARAMETER, "Block height out of range")
                })?;
            Ok(json!(hash.to_string()))
        }
        "getblockheader" => {
            let p = Params::new(
                method,
                &["blockhash", "verbose"],
                1,
                "\"blockhash\" ( verbose )",
                raw,
            )?;
            // Core: ParseHashV(request.params[0], "hash") in rpc/blockchain.cpp.
            let hash: BlockHash = p.hash_as(0, "hash")?;
            let verbose = p.bool_opt(1)?.unwrap_or(true);
            let (header, height, in_best) = node
                .header_by_hash(&hash)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            if !verbose {
                return Ok(json!(serialize_hex(&header)));
            }
            let n_tx = node.block(&hash).map_or(0, |(b, _)| b.txdata.len());
            Ok(header_json(node, &header, height, in_best, n_tx))
        }
        "getblock" => {
            let p = Params::new(
                method,
                &["blockhash", "verbosity"],
                1,
                "\"blockhash\" ( verbosity )",
                raw,
            )?;
            let hash: BlockHash = p.hash(0)?;
            let verbosity = p.verbosity(1, 1)?;
            let (block, _) = node
                .block(&hash)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            if verbosity == 0 {
                return Ok(json!(serialize_hex(&block)));
            }
            let (_, height, in_best) = node
                .header_by_hash(&hash)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            Ok(block_json(node, &block, height, in_best, verbosity))
        }
        "getrawtransaction" => {
            let p = Params::new(
                method,
                &["txid", "verbose", "blockhash"],
                1,
                "\"txid\" ( verbosity \"blockhash\" )",
                raw,
            )?;
            let txid: Txid = p.hash(0)?;
            let verbosity = p.verbosity(1, 0)?;
            let blockhash: Option<BlockHash> = match p.get(2) {
                None => None,
                Some(_) => Some(p.hash(2)?),
            };
            raw_transaction(node, &txid, verbosity, blockhash)
        }
        "sendrawtransaction" => {
            let p = Params::new(
                method,
                &["hexstring", "maxfeerate", "maxburnamount"],
                1,
                "\"hexstring\" ( maxfeerate maxburnamount )",
                raw,
            )?;
            let tx = decode_tx(p.str(0)?).ok_or_else(|| {
                RpcError::new(
                    code::DESERIALIZATION_ERROR,
                    "TX decode failed. Make sure the tx has at least one input.",
                )
            })?;
            let max_fee_rate = match p.get(1) {
                None => Some(FeeRate::from_sat_per_kwu(10_000_000 / 4)),
                Some(v) => {
                    let r = fee_rate_from_btc_per_kvb(v)?;
                    (r != FeeRate::ZERO).then_some(r)
                }
            };
            let max_burn = match p.get(2) {
                None => Amount::ZERO,
                Some(v) => amount_from_value(v)?,
            };
            for out in &tx.output {
                if (out.script_pubkey.is_op_return() || out.script_pubkey.len() > 10_000)
                    && out.value > max_burn
                {
                    return Err(RpcError::new(
                        code::VERIFY_ERROR,
                        "Unspendable output exceeds maximum configured by user (maxburnamount)",
                    ));
                }
            }
            let txid = node.send_raw_transaction(&tx, max_fee_rate)?;
            Ok(json!(txid.to_string()))
        }
        "testmempoolaccept" => {
            let p = Params::new(
                method,
                &["rawtxs", "maxfeerate"],
                1,
                "[\"rawtx\",...] ( maxfeerate )",
                raw,
            )?;
            let raws = p.required(0)?;
            let raws = raws.as_array().ok_or_else(|| type_error(raws, "array"))?;
            if raws.is_empty() || raws.len() > 25 {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Array must contain between 1 and 25 transactions.",
                ));
            }
            let max_fee_rate = match p.get(1) {
                None => Some(FeeRate::from_sat_per_kwu(10_000_000 / 4)),
                Some(v) => {
                    let r = fee_rate_from_btc_per_kvb(v)?;
                    (r != FeeRate::ZERO).then_some(r)
                }
            };
            let mut txs = Vec::with_capacity(raws.len());
            for raw_tx in raws {
                let s = raw_tx
                    .as_str()
                    .ok_or_else(|| type_error(raw_tx, "string"))?;
                let tx = decode_tx(s).ok_or_else(|| {
                    RpcError::new(
                        code::DESERIALIZATION_ERROR,
                        format!("TX decode failed: {s} Make sure the tx has at least one input."),
                    )
                })?;
                txs.push(tx);
            }
            if let [tx] = txs.as_slice() {
                let mut exit_early = false;
                let r = node.test_mempool_accept(tx);
                return Ok(Value::Array(vec![accept_result_json(
                    tx,
                    Some(r),
                    None,
                    max_fee_rate,
                    &mut exit_early,
                )]));
            }
            // Core's package path (`ProcessNewPackage` with `test_accept`): a package error is
            // repeated on every member; a member not validated because another failed first
            // (or the maxfeerate of an earlier member was exceeded) has only its ids.
            let verdict = node.test_mempool_accept_package(&txs);
            let mut exit_early = false;
            let out = txs
                .iter()
                .zip(verdict.results)
                .map(|(tx, r)| {
                    accept_result_json(
                        tx,
                        r,
                        verdict.package_error.as_deref(),
                        max_fee_rate,
                        &mut exit_early,
                    )
                })
                .collect();
            Ok(Value::Array(out))
        }
        "getrawmempool" => {
            let p = Params::new(
                method,
                &["verbose", "mempool_sequence"],
                0,
                "( verbose mempool_sequence )",
                raw,
            )?;
            let verbose = p.bool_opt(0)?.unwrap_or(false);
            let seq = p.bool_opt(1)?.unwrap_or(false);
            if verbose && seq {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Verbose results cannot contain mempool sequence values.",
                ));
            }
            let entries = node.mempool();
            if verbose {
                let mut map = Map::new();
                for e in &entries {
                    map.insert(e.txid.to_string(), mempool_entry_json(e));
                }
                Ok(Value::Object(map))
            } else {
                let txids: Vec<Value> = entries.iter().map(|e| json!(e.txid.to_string())).collect();
                if seq {
                    Ok(json!({"txids": txids, "mempool_sequence": 0}))
                } else {
                    Ok(Value::Array(txids))
                }
            }
        }
        "getmempoolentry" => {
            let p = Params::new(method, &["txid"], 1, "\"txid\"", raw)?;
            let txid: Txid = p.hash(0)?;
            let e = node.mempool_entry(&txid).ok_or_else(|| {
                RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
            })?;
            Ok(mempool_entry_json(&e))
        }
        "getmempoolinfo" => {
            Params::new(method, &[], 0, "", raw)?;
            let entries = node.mempool();
            let bytes: u64 = entries.iter().map(|e| e.vsize).sum();
            let fees: Amount = entries.iter().map(|e| e.fee).sum();
            Ok(json!({
                "loaded": true,
                "size": entries.len(),
                "bytes": bytes,
                "usage": bytes * 4,
                "total_fee": btc(fees),
                "maxmempool": 300_000_000u64,
                "mempoolminfee": btc_per_kvb(node.relay_fee()),
                "minrelaytxfee": btc_per_kvb(node.relay_fee()),
                "incrementalrelayfee": btc_per_kvb(node.relay_fee()),
                "unbroadcastcount": 0,
                "fullrbf": true,
            }))
        }
        "gettxout" => {
            let p = Params::new(
                method,
                &["txid", "n", "include_mempool"],
                2,
                "\"txid\" n ( include_mempool )",
                raw,
            )?;
            let txid: Txid = p.hash(0)?;
            let vout = p.u64_opt(1)?.unwrap_or(0);
            let include_mempool = p.bool_opt(2)?.unwrap_or(true);
            let Ok(vout) = u32::try_from(vout) else {
                return Ok(Value::Null);
            };
            let tip = node.tip();
            match node.utxo(&OutPoint { txid, vout }, include_mempool) {
                None => Ok(Value::Null),
                Some(u) => Ok(json!({
                    "bestblock": tip.hash.to_string(),
                    "confirmations": u.height.map_or(0, |h| tip.height.saturating_sub(h) + 1),
                    "value": btc(u.txout.value),
                    "scriptPubKey": script_pubkey_json(&u.txout.script_pubkey),
                    "coinbase": u.is_coinbase,
                })),
            }
        }
        "generatetoaddress" => {
            let p = Params::new(
                method,
                &["nblocks", "address", "maxtries"],
                2,
                "nblocks \"address\" ( maxtries )",
                raw,
            )?;
            let n = p.i64_opt(0)?.unwrap_or(0);
            let addr = parse_address(p.str(1)?)?;
            let n = u32::try_from(n.max(0)).unwrap_or(0);
            let hashes = node
                .generate_to_script(n, &addr.script_pubkey())
                .map_err(node_error)?;
            Ok(Value::Array(
                hashes.iter().map(|h| json!(h.to_string())).collect(),
            ))
        }
        "generatetodescriptor" => {
            let p = Params::new(
                method,
                &["num_blocks", "descriptor", "maxtries"],
                2,
                "num_blocks \"descriptor\" ( maxtries )",
                raw,
            )?;
            let n = p.i64_opt(0)?.unwrap_or(0);
            let spk = parse_output(p.str(1)?)?;
            let n = u32::try_from(n.max(0)).unwrap_or(0);
            let hashes = node.generate_to_script(n, &spk).map_err(node_error)?;
            Ok(Value::Array(
                hashes.iter().map(|h| json!(h.to_string())).collect(),
            ))
        }
        "generateblock" => {
            let p = Params::new(
                method,
                &["output", "transactions", "submit"],
                2,
                "\"output\" [\"rawtx/txid\",...] ( submit )",
                raw,
            )?;
            let spk = parse_output(p.str(0)?)?;
            let list = p.required(1)?;
            let list = list.as_array().ok_or_else(|| type_error(list, "array"))?;
            if p.bool_opt(2)? == Some(false) {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "submit=false is not supported by this node",
                ));
            }
            let mut txs = Vec::with_capacity(list.len());
            for item in list {
                let s = item.as_str().ok_or_else(|| type_error(item, "string"))?;
                if let Ok(txid) = parse_hash::<Txid>(s, "txid") {
                    let e = node
                        .mempool_entry(&txid)
                        .and_then(|_| node.transaction(&txid));
                    match e {
                        Some(info) if info.confirmation.is_none() => txs.push(info.tx),
                        _ => {
                            return Err(RpcError::new(
                                code::INVALID_ADDRESS_OR_KEY,
                                format!("Transaction {s} not in mempool."),
                            ))
                        }
                    }
                } else {
                    let tx = decode_tx(s).ok_or_else(|| {
                        RpcError::new(
                            code::DESERIALIZATION_ERROR,
                            format!("Transaction decode failed for {s}. Make sure the tx has at least one input."),
                        )
                    })?;
                    txs.push(tx);
                }
            }
            let hash = node.generate_block(&spk, txs).map_err(|r| {
                RpcError::new(
                    code::VERIFY_ERROR,
                    format!("TestBlockValidity failed: {}", r.message()),
                )
            })?;
            Ok(json!({"hash": hash.to_string()}))
        }
        "invalidateblock" => {
            let p = Params::new(method, &["blockhash"], 1, "\"blockhash\"", raw)?;
            let hash: BlockHash = p.hash(0)?;
            node.invalidate_block(&hash).map_err(node_error)?;
            Ok(Value::Null)
        }
        "reconsiderblock" => {
            let p = Params::new(method, &["blockhash"], 1, "\"blockhash\"", raw)?;
            let hash: BlockHash = p.hash(0)?;
            node.reconsider_block(&hash).map_err(node_error)?;
            Ok(Value::Null)
        }
        "estimatesmartfee" => {
            let p = Params::new(
                method,
                &["conf_target", "estimate_mode"],
                1,
                "conf_target ( \"estimate_mode\" )",
                raw,
            )?;
            let target = p.i64_opt(0)?.unwrap_or(0);
            if !(1..=1008).contains(&target) {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Invalid conf_target, must be between 1 and 1008",
                ));
            }
            if let Some(mode) = p.str_opt(1)? {
                if !["unset", "economical", "conservative"]
                    .contains(&mode.to_ascii_lowercase().as_str())
                {
                    return Err(RpcError::new(
                        code::INVALID_PARAMETER,
                        "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"",
                    ));
                }
            }
            let blocks = u16::try_from(target).unwrap_or(1008);
            match node.estimate_fee(blocks) {
                Some(rate) => Ok(json!({"feerate": btc_per_kvb(rate), "blocks": blocks})),
                None => {
                    Ok(json!({"errors": ["Insufficient data or no feerate found"], "blocks": 0}))
                }
            }
        }
        "setmocktime" => {
            let p = Params::new(method, &["timestamp"], 1, "timestamp", raw)?;
            let t = p.i64_opt(0)?.unwrap_or(0);
            if t < 0 {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    format!("Mocktime cannot be negative: {t}."),
                ));
            }
            node.set_mocktime(t.unsigned_abs());
            Ok(Value::Null)
        }
        "uptime" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(json!(ctx.shutdown.uptime().as_secs()))
        }
        "stop" => {
            Params::new(method, &["wait"], 0, "", raw)?;
            ctx.shutdown.trigger();
            Ok(json!("btcmpc regtest node stopping"))
        }
        "faucet" => {
            let p = Params::new(method, &["address", "amount"], 2, "\"address\" amount", raw)?;
            let addr = parse_address(p.str(0)?)?;
            let amount = amount_from_value(p.required(1)?)?;
            if amount == Amount::ZERO {
                return Err(RpcError::new(code::TYPE_ERROR, "Invalid amount for send"));
            }
            let faucet = ctx
                .faucet
                .as_ref()
                .ok_or_else(|| RpcError::new(code::METHOD_NOT_FOUND, "Method not found"))?;
            let (txid, block) = faucet
                .pay(&addr.script_pubkey(), amount)
                .map_err(|e| match e {
                    crate::faucet::FaucetError::InsufficientFunds { .. } => {
                        RpcError::new(code::WALLET_INSUFFICIENT_FUNDS, e.to_string())
                    }
                    crate::faucet::FaucetError::Rejected(r) => r.into(),
                    other => RpcError::new(code::MISC_ERROR, other.to_string()),
                })?;
            Ok(json!({"txid": txid.to_string(), "blockhash": block.to_string()}))
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}

/// An output given as an address or as an `addr(...)` / `raw(HEX)` descriptor.
fn parse_output(s: &str) -> Result<ScriptBuf, RpcError> {
    let bad = || {
        RpcError::new(
            code::INVALID_ADDRESS_OR_KEY,
            "Error: Invalid address or descriptor",
        )
    };
    let desc = s.split('#').next().unwrap_or(s);
    if let Some(inner) = desc.strip_prefix("addr(").and_then(|r| r.strip_suffix(')')) {
        return parse_address(inner)
            .map(|a| a.script_pubkey())
            .map_err(|_| bad());
    }
    if let Some(inner) = desc.strip_prefix("raw(").and_then(|r| r.strip_suffix(')')) {
        return hex::decode(inner)
            .map(ScriptBuf::from_bytes)
            .map_err(|_| bad());
    }
    parse_address(s)
        .map(|a| a.script_pubkey())
        .map_err(|_| bad())
}

fn blockchain_info(node: &Node) -> Value {
    let tip = node.tip();
    let target = tip.header.target();
    json!({
        "chain": "regtest",
        "blocks": tip.height,
        "headers": tip.height,
        "bestblockhash": tip.hash.to_string(),
        "bits": format!("{:08x}", tip.header.bits.to_consensus()),
        "target": hex::encode(target.to_be_bytes()),
        "difficulty": target.difficulty_float(),
        "time": tip.time,
        "mediantime": tip.median_time_past,
        "verificationprogress": 1,
        "initialblockdownload": false,
        "chainwork": hex::encode(tip.chain_work.to_be_bytes()),
        "size_on_disk": 0,
        "pruned": false,
        "warnings": [],
    })
}

/// Median time past of a block (the median of its and its 10 ancestors' times).
fn median_time_past(node: &Node, header: &bitcoin::block::Header) -> u32 {
    let mut times = vec![header.time];
    let mut prev = header.prev_blockhash;
    while times.len() < 11 && prev != BlockHash::all_zeros() {
        match node.header_by_hash(&prev) {
            Some((h, _, _)) => {
                times.push(h.time);
                prev = h.prev_blockhash;
            }
            None => break,
        }
    }
    times.sort_unstable();
    times[times.len() / 2]
}

/// Chain work up to a block at `height` (every regtest block has the same target).
fn chain_work_hex(header: &bitcoin::block::Header, height: u32) -> String {
    let le = header.work().to_le_bytes();
    let mut low = [0u8; 16];
    low.copy_from_slice(&le[..16]);
    let per_block = u128::from_le_bytes(low);
    let total = per_block.saturating_mul(u128::from(height) + 1);
    format!("{total:064x}")
}

fn header_json(
    node: &Node,
    header: &bitcoin::block::Header,
    height: u32,
    in_best: bool,
    n_tx: usize,
) -> Value {
    let tip = node.tip();
    let hash = header.block_hash();
    let target = header.target();
    let mut o = Map::new();
    o.insert("hash".into(), json!(hash.to_string()));
    o.insert(
        "confirmations".into(),
        json!(if in_best {
            i64::from(tip.height) - i64::from(height) + 1
        } else {
            -1
        }),
    );
    o.insert("height".into(), json!(height));
    o.insert("version".into(), json!(header.version.to_consensus()));
    o.insert(
        "versionHex".into(),
        json!(format!("{:08x}", header.version.to_consensus())),
    );
    o.insert("merkleroot".into(), json!(header.merkle_root.to_string()));
    o.insert("time".into(), json!(header.time));
    o.insert("mediantime".into(), json!(median_time_past(node, header)));
    o.insert("nonce".into(), json!(header.nonce));
    o.insert(
        "bits".into(),
        json!(format!("{:08x}", header.bits.to_consensus())),
    );
    o.insert("target".into(), json!(hex::encode(target.to_be_bytes())));
    o.insert("difficulty".into(), json!(target.difficulty_float()));
    o.insert("chainwork".into(), json!(chain_work_hex(header, height)));
    o.insert("nTx".into(), json!(n_tx));
    if header.prev_blockhash != BlockHash::all_zeros() {
        o.insert(
            "previousblockhash".into(),
            json!(header.prev_blockhash.to_string()),
        );
    }
    if in_best {
        if let Some(next) = node.block_hash(height + 1) {
            o.insert("nextblockhash".into(), json!(next.to_string()));
        }
    }
    Value::Object(o)
}

fn block_json(node: &Node, block: &Block, height: u32, in_best: bool, verbosity: u64) -> Value {
    let mut v = header_json(node, &block.header, height, in_best, block.txdata.len());
    let strippedsize = bitcoin::consensus::encode::serialize(&block.header).len()
        + bitcoin::VarInt(block.txdata.len() as u64).size()
        + block.txdata.iter().map(|t| t.base_size()).sum::<usize>();
    if let Some(o) = v.as_object_mut() {
        o.insert("strippedsize".into(), json!(strippedsize));
        o.insert("size".into(), json!(block.total_size()));
        o.insert("weight".into(), json!(block.weight().to_wu()));
        let txs: Vec<Value> = if verbosity >= 2 {
            block.txdata.iter().map(|t| tx_json(t, true)).collect()
        } else {
            block
                .txdata
                .iter()
                .map(|t| json!(t.compute_txid().to_string()))
                .collect()
        };
        o.insert("tx".into(), Value::Array(txs));
    }
    v
}

pub(crate) fn raw_transaction(
    node: &Node,
    txid: &Txid,
    verbosity: u64,
    blockhash: Option<BlockHash>,
) -> Result<Value, RpcError> {
    let (tx, conf, in_active) = match blockhash {
        Some(bh) => {
            let (block, height) = node.block(&bh).ok_or_else(|| {
                RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block hash not found")
            })?;
            let pos = block
                .txdata
                .iter()
                .position(|t| t.compute_txid() == *txid)
                .ok_or_else(|| {
                    RpcError::new(
                        code::INVALID_ADDRESS_OR_KEY,
                        "No such transaction found in the provided block. Use gettransaction for wallet transactions.",
                    )
                })?;
            let hdr_height = node.header_by_hash(&bh).map_or(0, |(_, h, _)| h);
            let tx = block.txdata[pos].clone();
            (
                tx,
                Some((
                    bh,
                    height.unwrap_or(hdr_height),
                    block.header.time,
                    height.is_some(),
                )),
                Some(height.is_some()),
            )
        }
        None => {
            let info = node.transaction(txid).ok_or_else(|| {
                RpcError::new(
                    code::INVALID_ADDRESS_OR_KEY,
                    "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
                )
            })?;
            let conf = info
                .confirmation
                .map(|c| (c.block_hash, c.height, c.time, true));
            (info.tx, conf, None)
        }
    };
    if verbosity == 0 {
        return Ok(json!(serialize_hex(&tx)));
    }
    let mut v = tx_json(&tx, true);
    if let Some(o) = v.as_object_mut() {
        if let Some(active) = in_active {
            o.insert("in_active_chain".into(), json!(active));
        }
        if let Some((bh, height, time, active)) = conf {
            let tip = node.tip();
            o.insert("blockhash".into(), json!(bh.to_string()));
            o.insert(
                "confirmations".into(),
                json!(if active {
                    tip.height.saturating_sub(height) + 1
                } else {
                    0
                }),
            );
            o.insert("time".into(), json!(time));
            o.insert("blocktime".into(), json!(time));
        }
    }
    Ok(v)
}

/// Core's name of an output script's type (`GetTxnOutputType`).
fn script_type(spk: &Script) -> &'static str {
    let b = spk.as_bytes();
    if spk.is_p2pkh() {
        "pubkeyhash"
    } else if spk.is_p2sh() {
        "scripthash"
    } else if spk.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if spk.is_p2wsh() {
        "witness_v0_scripthash"
    } else if spk.is_p2tr() {
        "witness_v1_taproot"
    } else if b == [0x51, 0x02, 0x4e, 0x73] {
        "anchor"
    } else if spk.is_witness_program() {
        "witness_unknown"
    } else if spk.is_op_return() {
        "nulldata"
    } else if spk.is_p2pk() {
        "pubkey"
    } else if spk.is_multisig() {
        "multisig"
    } else {
        "nonstandard"
    }
}

/// A script in Core's assembly notation (pushes of up to 4 bytes as numbers).
fn script_asm(script: &Script) -> String {
    use bitcoin::script::Instruction;
    let mut out: Vec<String> = Vec::new();
    for ins in script.instructions() {
        match ins {
            Ok(Instruction::PushBytes(p)) => {
                let bytes = p.as_bytes();
                if bytes.is_empty() {
                    out.push("0".into());
                } else if bytes.len() <= 4 {
                    // CScriptNum: little-endian, sign bit in the last byte.
                    let mut n: i64 = 0;
                    for (i, b) in bytes.iter().enumerate() {
                        n |= i64::from(*b) << (8 * i);
                    }
                    let last = bytes[bytes.len() - 1];
                    if last & 0x80 != 0 {
                        n &= !(0x80i64 << (8 * (bytes.len() - 1)));
                        n = -n;
                    }
                    out.push(n.to_string());
                } else {
                    out.push(hex::encode(bytes));
                }
            }
            Ok(Instruction::Op(op)) => {
                let code = op.to_u8();
                if (0x51..=0x60).contains(&code) {
                    out.push((code - 0x50).to_string());
                } else if code == 0x4f {
                    out.push("-1".into());
                } else {
                    out.push(op.to_string());
                }
            }
            Err(_) => {
                out.push("[error]".into());
                break;
            }
        }
    }
    out.join(" ")
}

fn script_pubkey_json(spk: &Script) -> Value {
    let mut o = Map::new();
    o.insert("asm".into(), json!(script_asm(spk)));
    o.insert("hex".into(), json!(hex::encode(spk.as_bytes())));
    if let Ok(addr) = Address::from_script(spk, Network::Regtest) {
        o.insert("address".into(), json!(addr.to_string()));
    }
    o.insert("type".into(), json!(script_type(spk)));
    Value::Object(o)
}

/// Core's `TxToUniv` (without `fee`, which needs the spent outputs).
fn tx_json(tx: &Transaction, include_hex: bool) -> Value {
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let mut o = Map::new();
            if tx.is_coinbase() {
                o.insert(
                    "coinbase".into(),
                    json!(hex::encode(input.script_sig.as_bytes())),
                );
            } else {
                o.insert(
                    "txid".into(),
                    json!(input.previous_output.txid.to_string()),
                );
                o.insert("vout".into(), json!(input.previous_output.vout));
                o.insert(
                    "scriptSig".into(),
                    json!({"asm": script_asm(&input.script_sig), "hex": hex::encode(input.script_sig.as_bytes())}),
                );
            }
            if !input.witness.is_empty() {
                o.insert(
                    "txinwitness".into(),
                    Value::Array(input.witness.iter().map(|w| json!(hex::encode(w))).collect()),
                );
            }
            o.insert("sequence".into(), json!(input.sequence.0));
            Value::Object(o)
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, out)| {
            json!({
                "value": btc(out.value),
                "n": n,
                "scriptPubKey": script_pubkey_json(&out.script_pubkey),
            })
        })
        .collect();
    let mut o = Map::new();
    o.insert("txid".into(), json!(tx.compute_txid().to_string()));
    o.insert("hash".into(), json!(tx.compute_wtxid().to_string()));
    o.insert("version".into(), json!(tx.version.0));
    o.insert("size".into(), json!(tx.total_size()));
    o.insert("vsize".into(), json!(tx.vsize()));
    o.insert("weight".into(), json!(tx.weight().to_wu()));
    o.insert("locktime".into(), json!(tx.lock_time.to_consensus_u32()));
    o.insert("vin".into(), Value::Array(vin));
    o.insert("vout".into(), Value::Array(vout));
    if include_hex {
        o.insert("hex".into(), json!(serialize_hex(tx)));
    }
    Value::Object(o)
}

/// One member of Core's `testmempoolaccept` answer (`rpc/mempool.cpp`): `txid`, `wtxid`, the
/// package error if any, then the verdict (`None`: not fully validated, ids only). A fee
/// above `max_fee_rate` is `max-fee-exceeded` and leaves the members after it with their ids
/// only (`exit_early`).
fn accept_result_json(
    tx: &Transaction,
    result: Option<Result<crate::node::AcceptInfo, crate::node::Reject>>,
    package_error: Option<&str>,
    max_fee_rate: Option<FeeRate>,
    exit_early: &mut bool,
) -> Value {
    let mut o = Map::new();
    o.insert("txid".into(), json!(tx.compute_txid().to_string()));
    o.insert("wtxid".into(), json!(tx.compute_wtxid().to_string()));
    if let Some(e) = package_error {
        o.insert("package-error".into(), json!(e));
    }
    let result = match result {
        Some(r) if !*exit_early => r,
        _ => return Value::Object(o),
    };
    match result {
        Ok(info) => {
            let vsize = info.vsize.max(1);
            // sat/kvB of this transaction.
            let sat_per_kvb = info.fee.to_sat().saturating_mul(1000) / vsize;
            let too_high = max_fee_rate
                .is_some_and(|max| sat_per_kvb > max.to_sat_per_kwu().saturating_mul(4));
            if too_high {
                o.insert("allowed".into(), json!(false));
                o.insert("reject-reason".into(), json!("max-fee-exceeded"));
                *exit_early = true;
            } else {
                o.insert("allowed".into(), json!(true));
                o.insert("vsize".into(), json!(info.vsize));
                o.insert(
                    "fees".into(),
                    json!({
                        "base": btc(info.fee),
                        "effective-feerate": Amount::from_sat(sat_per_kvb).to_btc(),
                        "effective-includes": [info.wtxid.to_string()],
                    }),
                );
            }
        }
        Err(r) => {
            o.insert("allowed".into(), json!(false));
            o.insert("reject-reason".into(), json!(r.reason));
            if let Some(d) = &r.details {
                o.insert("reject-details".into(), json!(format!("{}, {d}", r.reason)));
            }
        }
    }
    Value::Object(o)
}

fn mempool_entry_json(e: &MempoolEntry) -> Value {
    json!({
        "vsize": e.vsize,
        "weight": e.weight,
        "time": e.time,
        "height": e.height,
        "descendantcount": e.descendant_count,
        "descendantsize": e.descendant_size,
        "ancestorcount": e.ancestor_count,
        "ancestorsize": e.ancestor_size,
        "wtxid": e.wtxid.to_string(),
        "fees": {
            "base": btc(e.fee),
            "modified": btc(e.fee),
            "ancestor": btc(e.ancestor_fees),
            "descendant": btc(e.descendant_fees),
        },
        "depends": e.depends.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "spentby": e.spent_by.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "bip125-replaceable": true,
        "unbroadcast": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    #[test]
    fn asm_like_core() {
        let spk = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        assert_eq!(
            script_asm(&spk),
            "0 751e76e8199196d454941c45d1b3a323f1433bd6"
        );
        assert_eq!(script_type(&spk), "witness_v0_keyhash");
        // A CLTV script: <500> OP_CHECKLOCKTIMEVERIFY OP_DROP.
        let s = ScriptBuf::from_hex("02f401b175").unwrap();
        assert!(script_asm(&s).starts_with("500 OP_"));
        let neg = ScriptBuf::from_hex("0181").unwrap();
        assert_eq!(script_asm(&neg), "-1");
    }

    #[test]
    fn hash_parameter_errors_match_core() {
        let e = parse_hash::<Txid>("abc", "txid").unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMETER);
        assert_eq!(e.message, "txid must be of length 64 (not 3, for 'abc')");
        let bad = "z".repeat(64);
        let e = parse_hash::<Txid>(&bad, "txid").unwrap_err();
        assert_eq!(
            e.message,
            format!("txid must be hexadecimal string (not '{bad}')")
        );
    }

    #[test]
    fn credentials_check() {
        let c = RpcCredentials::new([("__cookie__".to_string(), "ab".to_string())]);
        let good = format!(
            "Basic {}",
            crate::rpc_client::base64_encode(b"__cookie__:ab")
        );
        let bad = format!(
            "Basic {}",
            crate::rpc_client::base64_encode(b"__cookie__:ac")
        );
        assert!(c.check(Some(&good)));
        assert!(!c.check(Some(&bad)));
        assert!(!c.check(None));
        assert!(!c.check(Some("Bearer x")));
    }

    #[test]
    fn amounts_and_fee_rates() {
        assert_eq!(
            amount_from_value(&json!(0.0001)).unwrap(),
            Amount::from_sat(10_000)
        );
        assert_eq!(
            amount_from_value(&json!("1.5")).unwrap(),
            Amount::from_sat(150_000_000)
        );
        assert!(amount_from_value(&json!(0.000000001)).is_err());
        assert!(amount_from_value(&json!(-1)).is_err());
        let r = fee_rate_from_btc_per_kvb(&json!(0.0001)).unwrap();
        assert_eq!(btc_per_kvb(r), json!(0.0001));
        assert!(fee_rate_from_btc_per_kvb(&json!(1)).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Every method with arbitrary parameters returns a result or a Core error, never
        /// panics (mining and stop are left out: they are valid with most inputs).
        #[test]
        fn every_method_with_any_params(
            m in proptest::sample::select(vec![
                "getblockchaininfo", "getblockcount", "getbestblockhash", "getblockhash",
                "getblockheader", "getblock", "getrawtransaction", "sendrawtransaction",
                "testmempoolaccept", "getrawmempool", "getmempoolentry", "getmempoolinfo",
                "gettxout", "invalidateblock", "reconsiderblock", "estimatesmartfee",
                "faucet", "nosuchmethod",
            ]),
            params in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(Value::Null),
                    proptest::arbitrary::any::<bool>().prop_map(Value::Bool),
                    proptest::arbitrary::any::<i64>().prop_map(|n| json!(n)),
                    proptest::arbitrary::any::<f64>().prop_map(|f| json!(f)),
                    ".{0,70}".prop_map(Value::String),
                    "[0-9a-f]{64}".prop_map(Value::String),
                    "[0-9a-f]{0,300}".prop_map(Value::String),
                    proptest::collection::vec("[0-9a-f]{0,80}", 0..3)
                        .prop_map(|v| json!(v)),
                ],
                0..4,
            ),
        ) {
            let ctx = RpcContext {
                node: Node::open(crate::node::NodeConfig::in_memory()).unwrap(),
                faucet: None,
                shutdown: Shutdown::new(),
            };
            match dispatch(&ctx, m, Value::Array(params)) {
                Ok(_) => {}
                Err(e) => proptest::prop_assert!(e.code < 0 && !e.message.is_empty()),
            }
        }
    }
}
