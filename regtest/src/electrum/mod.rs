//! An Electrum protocol 1.4 server over TCP for the embedded node.
//!
//! Newline-delimited JSON-RPC: a line holds one request or a JSON array of requests (a batch),
//! and one write may carry several lines (electrum-client pipelines its batches that way).
//! Replies go out in request order, each answered by its id; notifications of new tips
//! (`blockchain.headers.subscribe`) and of changed script-hash statuses
//! (`blockchain.scripthash.subscribe`, mempool changes included) are interleaved between them.
//!
//! The method set, result shapes and error objects follow electrs (which btcmpc uses against
//! real nodes): a refused broadcast answers `{"code": 2, "message": "<Core's reject text>"}`,
//! bad parameters `-32602`, unknown methods `-32601`, `blockchain.estimatefee` answers -1 when
//! there is no estimate. Checkpoint proofs (`cp_height` > 0) follow ElectrumX.
//!
//! Every input is bounded ([`Limits`], one file-descriptor budget shared with the RPC server):
//! lines are capped at [`MAX_LINE`] bytes (a longer one gets a `-32700` "request too large"
//! error and the connection is closed), a batch at [`Limits::max_batch`] requests and a line at
//! [`MAX_JSON_TOKENS`] JSON values (both `-32600`, the connection stays), subscriptions per
//! connection and in total, the reply to one batch line ([`Limits::max_reply`] bytes, else
//! `-32600`), reply bytes queued per client and over all clients ([`Limits::out_bytes`],
//! [`Limits::out_bytes_total`]: past them the client's next line is not read until its replies
//! are written, i.e. back-pressure rather than closing a slow reader); lines above 64 KiB are read and handled
//! a few at a time ([`Limits::large_inputs`]) and their buffers are freed afterwards, so the
//! server's memory stays bounded and returns when clients leave. Connections are admitted by
//! the policy of [`crate::limits`]: a new client can always connect; when the server or the
//! client's IP is full, the least recently active connection (of that IP first) is closed.
//! A client that does not read its notifications is disconnected rather than buffered
//! without bound. A line a client has started must be complete within 30 s, and a connection
//! with no request for 10 minutes is closed unless it holds a subscription (subscribed clients
//! wait for notifications).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::consensus::encode::serialize_hex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::limits::{json_within, Limits, OutBudget, OutPermit, Slot, Slots, SMALL_INPUT};
use crate::node::{Node, NodeEvent, ScriptHash};
use crate::server::Shutdown;

mod headers;
mod params;
mod scripthash;
mod server;
mod transaction;

/// The protocol version served.
pub const PROTOCOL_VERSION: &str = "1.4";
/// The largest request line accepted by default (1 MiB, newline included).
pub const MAX_LINE: usize = 1024 * 1024;
/// Most JSON values (objects, arrays, members, elements) in one line: bounds the memory of
/// parsing a line to a few MiB whatever its shape.
pub const MAX_JSON_TOKENS: usize = 100_000;
/// Most headers returned by one `blockchain.block.headers` (as electrs).
const MAX_HEADERS: u32 = 2016;
/// How long one write to a client may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the rest of an oversized line is read and discarded before closing, so that the
/// client sees the error instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// How long reads of one connection may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request line must be complete this long after its first byte arrived.
    pub(crate) line: Duration,
    /// A connection without a subscription is closed after this long without a request.
    pub(crate) idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            line: Duration::from_secs(30),
            idle: Duration::from_secs(600),
        }
    }
}

fn server_id() -> String {
    format!("btcmpc-regtest/{}", env!("CARGO_PKG_VERSION"))
}

/// Serve the Electrum protocol on `listener` until `shutdown` is triggered.
pub async fn serve(listener: TcpListener, node: Node, shutdown: Shutdown) {
    serve_with_timeouts(listener, node, shutdown, Timeouts::default()).await;
}

/// [`serve`] with other read timeouts (short ones in tests).
pub(crate) async fn serve_with_timeouts(
    listener: TcpListener,
    node: Node,
    shutdown: Shutdown,
    timeouts: Timeouts,
) {
    serve_with(listener, node, shutdown, timeouts, Limits::default()).await;
}

/// What every connection of one server shares.
struct Shared {
    limits: Limits,
    /// Permits to read and handle a line above [`SMALL_INPUT`].
    large: Arc<Semaphore>,
    /// Script-hash subscriptions over all connections.
    subscriptions: Arc<AtomicUsize>,
    /// Reply bytes queued over all connections ([`Limits::out_bytes_total`]).
    out_total: (Arc<Semaphore>, usize),
}

/// [`serve`] with other timeouts and limits.
pub(crate) async fn serve_with(
    listener: TcpListener,
    node: Node,
    shutdown: Shutdown,
    timeouts: Timeouts,
    limits: Limits,
) {
    serve_shared(listener, node, shutdown, timeouts, Shared::new(limits)).await;
}

impl Shared {
    fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Shared {
            limits,
            large: Arc::new(Semaphore::new(limits.large_inputs.max(1))),
            subscriptions: Arc::new(AtomicUsize::new(0)),
            out_total: OutBudget::total(limits.out_bytes_total),
        })
    }
}

/// [`serve_with`] with the state its connections share.
async fn serve_shared(
    listener: TcpListener,
    node: Node,
    shutdown: Shutdown,
    timeouts: Timeouts,
    shared: Arc<Shared>,
) {
    let limits = shared.limits;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let slots = Slots::new(limits.electrum_connections, limits.electrum_per_ip);
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
                let node = node.clone();
                let shutdown = shutdown.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown.wait() => {}
                        r = connection(stream, node, port, timeouts, shared, slot) => {
                            if let Err(e) = r {
                                debug!(target: "btcmpc_regtest::electrum", %peer, "connection closed: {e}");
                            }
                        }
                    }
                });
            }
            Err(e) => {
                warn!(target: "btcmpc_regtest::electrum", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Per-connection subscriptions and the limits they are held to.
struct Session {
    headers: bool,
    last_tip: Option<bitcoin::BlockHash>,
    scripthashes: HashMap<ScriptHash, Option<[u8; 32]>>,
    max_batch: usize,
    max_reply: usize,
    max_subscriptions: usize,
    max_total_subscriptions: usize,
    /// Subscriptions over all connections; this session's are taken off when it is dropped.
    total_subscriptions: Arc<AtomicUsize>,
}

impl Default for Session {
    fn default() -> Self {
        let l = Limits::default();
        Session::new(&l, Arc::new(AtomicUsize::new(0)))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.total_subscriptions
            .fetch_sub(self.scripthashes.len(), Ordering::Relaxed);
    }
}

impl Session {
    fn new(limits: &Limits, total: Arc<AtomicUsize>) -> Self {
        Session {
            headers: false,
            last_tip: None,
            scripthashes: HashMap::new(),
            max_batch: limits.max_batch,
            max_reply: limits.max_reply,
            max_subscriptions: limits.max_subscriptions,
            max_total_subscriptions: limits.max_total_subscriptions,
            total_subscriptions: total,
        }
    }

    /// A session to swap in while this one is handled on the blocking pool.
    fn placeholder(&self) -> Self {
        Session {
            headers: false,
            last_tip: None,
            scripthashes: HashMap::new(),
            max_batch: self.max_batch,
            max_reply: self.max_reply,
            max_subscriptions: self.max_subscriptions,
            max_total_subscriptions: self.max_total_subscriptions,
            total_subscriptions: self.total_subscriptions.clone(),
        }
    }

    fn subscribed(&self) -> bool {
        self.headers || !self.scripthashes.is_empty()
    }
}

async fn connection(
    stream: TcpStream,
    node: Node,
    port: u16,
    timeouts: Timeouts,
    shared: Arc<Shared>,
    slot: Slot,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let limits = shared.limits;
    // Queued replies are bounded in number and in bytes (per client and over all clients);
    // each carries its reserved bytes, given back once written or dropped.
    let budget = OutBudget::new(limits.out_bytes, shared.out_total.clone());
    let (out_tx, mut out_rx) = mpsc::channel::<(String, OutPermit)>(limits.out_queue.max(1));
    let writer = tokio::spawn(async move {
        while let Some((mut msg, permit)) = out_rx.recv().await {
            // Coalesce what is already queued into one write.
            let mut permits = vec![permit];
            msg.push('\n');
            while msg.len() <= 1 << 20 {
                let Ok((more, p)) = out_rx.try_recv() else {
                    break;
                };
                msg.push_str(&more);
                msg.push('\n');
                permits.push(p);
            }
            match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(msg.as_bytes())).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            drop(permits);
        }
    });
    let mut events = node.subscribe();
    let mut session = Session::new(&limits, shared.subscriptions.clone());
    let mut line = Vec::new();
    // Held while a line above SMALL_INPUT is read and handled.
    let mut large: Option<OwnedSemaphorePermit> = None;
    let mut linger = false;
    // When the first byte of the line being read arrived.
    let mut line_started: Option<tokio::time::Instant> = None;
    let mut last_request = tokio::time::Instant::now();
    let result = loop {
        // Idle clients are closed only between lines and only without subscriptions.
        let idle_armed = line.is_empty() && !session.subscribed();
        let idle_deadline = last_request + timeouts.idle;
        tokio::select! {
            _ = slot.evicted() => {
                debug!(target: "btcmpc_regtest::electrum", "closed to make room for a new connection");
                break Ok(());
            }
            _ = tokio::time::sleep_until(idle_deadline), if idle_armed => {
                if line.is_empty() {
                    debug!(target: "btcmpc_regtest::electrum", "idle connection without subscriptions, closing");
                    break Ok(());
                }
                // A line started meanwhile: its own deadline applies.
                continue;
            }
            read = read_line_into(&mut reader, &mut line, &mut line_started, timeouts.line, limits.max_line, &shared.large, &mut large) => {
                match read {
                    Err(e) => break Err(e),
                    Ok(false) => break Ok(()),
                    Ok(true) => {}
                }
                line_started = None;
                last_request = tokio::time::Instant::now();
                slot.touch();
                if line.len() > limits.max_line || line.last() != Some(&b'\n') {
                    let msg = format!("request too large (more than {} bytes)", limits.max_line);
                    let msg = error_msg(&Value::Null, -32700, &msg).to_string();
                    if let Some(p) = budget.try_reserve(msg.len() + 1) {
                        let _ = out_tx.send((msg, p)).await;
                    }
                    linger = true;
                    break Ok(());
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                // Keep no large buffer once its line is taken.
                if line.capacity() > SMALL_INPUT {
                    line = Vec::new();
                } else {
                    line.clear();
                }
                let text = text.trim();
                if text.is_empty() {
                    large = None;
                    continue;
                }
                let node2 = node.clone();
                let text = text.to_owned();
                // Handling may touch the chain lock: keep it off the async workers.
                let placeholder = session.placeholder();
                let mut s = std::mem::replace(&mut session, placeholder);
                let (reply, s) = tokio::task::spawn_blocking(move || {
                    let reply = handle_line(&node2, &mut s, &text, port);
                    (reply, s)
                })
                .await
                .map_err(std::io::Error::other)?;
                session = s;
                // The large line and its parse are gone: let another one in.
                large = None;
                if let Some(reply) = reply {
                    // Back-pressure: while this client's queued bytes (or all clients') are
                    // over budget, its next line is not read.
                    let Some(permit) = budget.reserve(reply.len() + 1).await else {
                        break Ok(());
                    };
                    if out_tx.send((reply, permit)).await.is_err() {
                        break Ok(());
                    }
                }
            }
            ev = events.recv() => {
                let changed = match ev {
                    Ok(NodeEvent::NewTip { .. }) => Changed::Tip,
                    Ok(NodeEvent::ScriptHashesChanged(list)) => Changed::Scripts(list),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => Changed::All,
                    Err(broadcast::error::RecvError::Closed) => break Ok(()),
                };
                let node2 = node.clone();
                let placeholder = session.placeholder();
                let mut s = std::mem::replace(&mut session, placeholder);
                let (notes, s) = tokio::task::spawn_blocking(move || {
                    let notes = notifications(&node2, &mut s, changed);
                    (notes, s)
                })
                .await
                .map_err(std::io::Error::other)?;
                session = s;
                // A client that does not read its notifications is dropped rather than
                // buffered without bound.
                if notes.into_iter().any(|n| {
                    budget
                        .try_reserve(n.len() + 1)
                        .is_none_or(|p| out_tx.try_send((n, p)).is_err())
                }) {
                    debug!(target: "btcmpc_regtest::electrum", "client does not read its notifications, closing");
                    break Ok(());
                }
            }
        }
    };
    drop(out_tx);
    drop(line);
    drop(large);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, writer).await;
    if linger {
        // Read and discard what the client is still sending (bounded in time), so that it
        // reads the error rather than a connection reset.
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut sink = [0u8; 16 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read(&mut reader, &mut sink),
        )
        .await
        {
            if n == 0 {
                break;
            }
        }
    }
    result
}

/// Read into `line` up to and including `\n` (at most `max_line + 1` bytes). Cancel-safe:
/// bytes read before a cancellation stay in `line`, and `started` keeps when its first byte
/// came. Past [`SMALL_INPUT`] bytes a permit of `large_sem` is taken into `large` first (the
/// caller drops it once the line is handled). Returns `false` at end of stream, a `TimedOut`
/// error when a started line is not complete `line_timeout` after its first byte.
#[allow(clippy::too_many_arguments)]
async fn read_line_into(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut Vec<u8>,
    started: &mut Option<tokio::time::Instant>,
    line_timeout: Duration,
    max_line: usize,
    large_sem: &Arc<Semaphore>,
    large: &mut Option<OwnedSemaphorePermit>,
) -> std::io::Result<bool> {
    loop {
        if line.len() >= SMALL_INPUT && large.is_none() {
            let deadline = started.unwrap_or_else(tokio::time::Instant::now) + line_timeout;
            match tokio::time::timeout_at(deadline, large_sem.clone().acquire_owned()).await {
                Ok(Ok(p)) => *large = Some(p),
                Ok(Err(_)) => return Err(std::io::Error::other("server closing")),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request line not completed in time",
                    ))
                }
            }
        }
        let buf = match (line.is_empty(), *started) {
            (false, Some(t)) => {
                match tokio::time::timeout_at(t + line_timeout, reader.fill_buf()).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "request line not completed in time",
                        ))
                    }
                }
            }
            _ => reader.fill_buf().await?,
        };
        if buf.is_empty() {
            return Ok(false);
        }
        if started.is_none() {
            *started = Some(tokio::time::Instant::now());
        }
        // Up to SMALL_INPUT without a permit, up to max_line + 1 with one.
        let cap = if large.is_some() {
            max_line + 1
        } else {
            SMALL_INPUT.min(max_line + 1)
        };
        let room = cap.saturating_sub(line.len());
        let window = &buf[..buf.len().min(room)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..=i]);
            reader.consume(i + 1);
            return Ok(true);
        }
        let n = window.len();
        line.extend_from_slice(window);
        reader.consume(n);
        if line.len() > max_line {
            return Ok(true);
        }
    }
}

enum Changed {
    Tip,
    Scripts(Vec<ScriptHash>),
    All,
}

fn notification(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

fn header_notification(node: &Node) -> Value {
    let tip = node.tip();
    json!({"height": tip.height, "hex": serialize_hex(&tip.header)})
}

fn status_json(status: Option<[u8; 32]>) -> Value {
    match status {
        Some(s) => json!(hex::encode(s)),
        None => Value::Null,
    }
}

fn notifications(node: &Node, session: &mut Session, changed: Changed) -> Vec<String> {
    let mut out = Vec::new();
    let check_scripts: Vec<ScriptHash> = match &changed {
        Changed::Scripts(list) => list
            .iter()
            .filter(|sh| session.scripthashes.contains_key(sh))
            .copied()
            .collect(),
        // A reorg can change heights without a script event for every script: recheck all.
        Changed::Tip | Changed::All => session.scripthashes.keys().copied().collect(),
    };
    if matches!(changed, Changed::Tip | Changed::All) && session.headers {
        let tip = node.tip();
        if session.last_tip != Some(tip.hash) {
            session.last_tip = Some(tip.hash);
            out.push(notification(
                "blockchain.headers.subscribe",
                json!([header_notification(node)]),
            ));
        }
    }
    for sh in check_scripts {
        let status = node.status_hash(&sh);
        if let Some(last) = session.scripthashes.get_mut(&sh) {
            if *last != status {
                *last = status;
                out.push(notification(
                    "blockchain.scripthash.subscribe",
                    json!([sh.to_string(), status_json(status)]),
                ));
            }
        }
    }
    out
}

/// Merkle branch of the block hash at `height` in the tree of the block hashes 0..=`cp_height`
/// and the tree's root, hex in display order (Electrum's checkpoint proofs).
fn header_proof(
    node: &Node,
    height: u32,
    cp_height: u32,
) -> Result<(Vec<String>, String), CallError> {
    use bitcoin::hashes::{sha256d, Hash as _};
    if height > cp_height || cp_height > node.tip().height {
        return Err(CallError::bad(format!(
            "header height {height} must be <= cp_height {cp_height} which must be <= chain height {}",
            node.tip().height
        )));
    }
    let mut level: Vec<sha256d::Hash> = (0..=cp_height)
        .map(|h| node.block_hash(h).map(|b| b.to_raw_hash()))
        .collect::<Option<_>>()
        .ok_or_else(|| CallError::bad("the chain changed during the request"))?;
    let display = |h: &sha256d::Hash| {
        let mut b = h.to_byte_array();
        b.reverse();
        hex::encode(b)
    };
    let mut index = height as usize;
    let mut branch = Vec::new();
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            let last = level[level.len() - 1];
            level.push(last);
        }
        branch.push(display(&level[index ^ 1]));
        level = level
            .chunks(2)
            .map(|pair| {
                let mut e = sha256d::Hash::engine();
                bitcoin::hashes::HashEngine::input(&mut e, pair[0].as_byte_array());
                bitcoin::hashes::HashEngine::input(&mut e, pair[1].as_byte_array());
                sha256d::Hash::from_engine(e)
            })
            .collect();
        index /= 2;
    }
    Ok((branch, display(&level[0])))
}

fn result_msg(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn error_msg(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// An Electrum error: `-32602` invalid params, `-32601` unknown method, `1` bad request,
/// `2` refused by the node (broadcast).
struct CallError {
    code: i64,
    message: String,
}

impl CallError {
    fn params() -> Self {
        CallError {
            code: -32602,
            message: "invalid params".into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        CallError {
            code: 1,
            message: message.into(),
        }
    }

    /// `-32601`, as electrs answers an unknown method.
    fn not_found() -> Self {
        CallError {
            code: -32601,
            message: "method not found".into(),
        }
    }
}

/// Handle one line (a request or a batch); `None` when nothing is to be answered.
fn handle_line(node: &Node, session: &mut Session, line: &str, port: u16) -> Option<String> {
    if !json_within(line.as_bytes(), MAX_JSON_TOKENS) {
        let msg = format!("request too complex (more than {MAX_JSON_TOKENS} JSON values)");
        return Some(error_msg(&Value::Null, -32600, &msg).to_string());
    }
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => return Some(error_msg(&Value::Null, -32700, "parse error").to_string()),
    };
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Some(error_msg(&Value::Null, -32600, "invalid request").to_string());
            }
            if items.len() > session.max_batch {
                let msg = format!(
                    "batch too large ({} requests, at most {})",
                    items.len(),
                    session.max_batch
                );
                return Some(error_msg(&Value::Null, -32600, &msg).to_string());
            }
            // The replies are joined as they come, and the batch refused as soon as they add
            // up to more than max_reply bytes: what one line can make the server hold is
            // bounded whatever it asks for.
            let mut out = String::from("[");
            for (i, item) in items.iter().enumerate() {
                let reply = handle_request(node, session, item, port).to_string();
                if out.len() + reply.len() + 2 > session.max_reply {
                    let msg = format!(
                        "reply too large (more than {} bytes after {i} of {} requests)",
                        session.max_reply,
                        items.len()
                    );
                    return Some(error_msg(&Value::Null, -32600, &msg).to_string());
                }
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&reply);
            }
            out.push(']');
            Some(out)
        }
        v @ Value::Object(_) => Some(handle_request(node, session, &v, port).to_string()),
        _ => Some(error_msg(&Value::Null, -32600, "invalid request").to_string()),
    }
}

fn handle_request(node: &Node, session: &mut Session, req: &Value, port: u16) -> Value {
    let Some(obj) = req.as_object() else {
        return error_msg(&Value::Null, -32600, "invalid request");
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return error_msg(&id, -32600, "invalid request");
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return error_msg(&id, -32602, "invalid params"),
    };
    match call(node, session, method, &params, port) {
        Ok(v) => result_msg(&id, v),
        Err(e) => {
            if e.code != -32601 {
                debug!(target: "btcmpc_regtest::electrum", method, "call failed: {}", e.message);
            }
            error_msg(&id, e.code, &e.message)
        }
    }
}

/// Runs one request's method (`port` is this server's, for `server.features`).
fn call(
    node: &Node,
    session: &mut Session,
    method: &str,
    params: &[Value],
    port: u16,
) -> Result<Value, CallError> {
    match method {
        "server.version"
        | "server.features"
        | "server.ping"
        | "server.banner"
        | "server.donation_address"
        | "server.peers.subscribe" => server::call(node, method, params, port),
        "blockchain.headers.subscribe" | "blockchain.block.header" | "blockchain.block.headers" => {
            headers::call(node, session, method, params)
        }
        "blockchain.scripthash.get_history"
        | "blockchain.scripthash.get_balance"
        | "blockchain.scripthash.listunspent"
        | "blockchain.scripthash.subscribe"
        | "blockchain.scripthash.unsubscribe" => scripthash::call(node, session, method, params),
        "blockchain.transaction.get"
        | "blockchain.transaction.get_merkle"
        | "blockchain.transaction.id_from_pos"
        | "blockchain.transaction.broadcast"
        | "blockchain.estimatefee"
        | "blockchain.relayfee"
        | "mempool.get_fee_histogram" => transaction::call(node, method, params),
        _ => Err(CallError::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{BufRead as _, Read as _, Write as _};

    /// An Electrum server on an in-memory node with short read timeouts; returns its address
    /// and the runtime serving it.
    fn short_timeout_server() -> (std::net::SocketAddr, tokio::runtime::Runtime, Shutdown) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let node = Node::open(crate::node::NodeConfig::in_memory()).unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let timeouts = Timeouts {
            line: Duration::from_millis(300),
            idle: Duration::from_millis(700),
        };
        rt.spawn(serve_with_timeouts(
            listener,
            node,
            shutdown.clone(),
            timeouts,
        ));
        (addr, rt, shutdown)
    }

    /// An Electrum server on an in-memory node with `limits`; returns its address, the
    /// runtime serving it and its shutdown switch.
    fn limited_server(limits: Limits) -> (std::net::SocketAddr, tokio::runtime::Runtime, Shutdown) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let node = Node::open(crate::node::NodeConfig::in_memory()).unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        rt.spawn(serve_with(
            listener,
            node,
            shutdown.clone(),
            Timeouts::default(),
            limits,
        ));
        (addr, rt, shutdown)
    }

    /// [`limited_server`] that also returns the state its connections share.
    fn shared_server(
        limits: Limits,
    ) -> (
        std::net::SocketAddr,
        tokio::runtime::Runtime,
        Shutdown,
        Arc<Shared>,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let node = Node::open(crate::node::NodeConfig::in_memory()).unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let shared = Shared::new(limits);
        rt.spawn(serve_shared(
            listener,
            node,
            shutdown.clone(),
            Timeouts::default(),
            shared.clone(),
        ));
        (addr, rt, shutdown, shared)
    }

    /// A batch line of `n` `server.features` requests (about 36 bytes each, answered by about
    /// 330 bytes each).
    fn features_batch(n: usize) -> String {
        let items: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"id":{i},"method":"server.features"}}"#))
            .collect();
        format!("[{}]", items.join(","))
    }

    #[test]
    fn a_batch_whose_reply_is_too_large_is_refused_and_the_connection_serves() {
        let mut limits = Limits::from_fd_limit(1024);
        limits.max_reply = 20_000;
        let (addr, _rt, shutdown) = limited_server(limits);
        let mut s = connect(addr);
        // Ten features fit in 20,000 bytes.
        let r = request(&mut s, &features_batch(10));
        assert_eq!(r.as_array().map(Vec::len), Some(10), "{r}");
        // A thousand (about 330 KB of reply from a 37 KB line) do not.
        let r = request(&mut s, &features_batch(1000));
        assert_eq!(r["error"]["code"], -32600, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("reply too large (more than 20000 bytes"),
            "{r}"
        );
        // The same connection still answers a small request.
        let r = request(&mut s, r#"{"id": 9, "method": "server.ping"}"#);
        assert_eq!(r["id"], 9, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        shutdown.trigger();
    }

    #[test]
    fn a_client_that_never_reads_stops_being_read_and_others_are_served() {
        let mut limits = Limits::from_fd_limit(1024);
        limits.out_bytes = 1 << 20;
        // No count bound: only the byte budget holds this client back.
        limits.out_queue = 1_000_000;
        let (addr, _rt, shutdown, shared) = shared_server(limits);
        let mut flood = connect(addr);
        flood
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // Each line asks for ~330 KB. Unbounded, 4,000 lines would queue ~1.3 GB; bounded,
        // the server stops reading once 1 MiB is queued, socket buffers fill and our writes
        // stall.
        let line = format!(
            "{}
",
            features_batch(1000)
        );
        let mut stalled = false;
        for _ in 0..4000 {
            match flood.write_all(line.as_bytes()) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    stalled = true;
                    break;
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
        assert!(stalled, "the server kept reading a client that never reads");
        let (total, cap) = &shared.out_total;
        let queued = cap - total.available_permits();
        assert!(
            queued > 0 && queued <= limits.out_bytes,
            "{queued} bytes queued"
        );
        // A fresh client is answered meanwhile.
        let mut fresh = connect(addr);
        let r = request(&mut fresh, r#"{"id": 5, "method": "server.ping"}"#);
        assert_eq!(r["id"], 5, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        shutdown.trigger();
    }

    fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    #[test]
    fn oversized_line_is_answered_closed_and_a_fresh_client_served() {
        let limits = Limits::from_fd_limit(1024);
        let (addr, _rt, shutdown) = limited_server(limits);
        let mut s = connect(addr);
        let mut w = s.try_clone().unwrap();
        // A 2 MiB batch line of pings: over the 1 MiB cap.
        let sender = std::thread::spawn(move || {
            let one = r#"{"id":1,"method":"server.ping"},"#;
            let mut line = String::from("[");
            while line.len() < 2 << 20 {
                line.push_str(one);
            }
            line.push_str(r#"{"id":2,"method":"server.ping"}]"#);
            line.push('\n');
            let _ = w.write_all(line.as_bytes());
        });
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reply = String::new();
        std::io::BufReader::new(s.try_clone().unwrap())
            .read_line(&mut reply)
            .unwrap();
        let v: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["error"]["code"], -32700, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("request too large"),
            "{v}"
        );
        assert!(closed_within(&mut s, Duration::from_secs(20)));
        let _ = sender.join();
        let mut fresh = connect(addr);
        let r = request(&mut fresh, r#"{"id": 5, "method": "server.ping"}"#);
        assert_eq!(r["id"], 5, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        shutdown.trigger();
    }

    #[test]
    fn batches_lines_and_subscriptions_are_bounded() {
        let mut limits = Limits::from_fd_limit(1024);
        limits.max_batch = 10;
        limits.max_subscriptions = 3;
        limits.max_total_subscriptions = 5;
        let (addr, _rt, shutdown) = limited_server(limits);
        let mut s = connect(addr);
        let batch = |n: usize| {
            let items: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"id":{i},"method":"server.ping"}}"#))
                .collect();
            format!("[{}]", items.join(","))
        };
        // At the bound: answered.
        let r = request(&mut s, &batch(10));
        assert_eq!(r.as_array().map(Vec::len), Some(10), "{r}");
        // One more: refused, and the connection still serves.
        let r = request(&mut s, &batch(11));
        assert_eq!(r["error"]["code"], -32600, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("batch too large (11 requests, at most 10)"),
            "{r}"
        );
        // A short line of many JSON values: refused before it is parsed.
        let deep = format!("[{}0]", "0,".repeat(MAX_JSON_TOKENS + 1));
        assert!(deep.len() < MAX_LINE);
        let r = request(&mut s, &deep);
        assert_eq!(r["error"]["code"], -32600, "{r}");
        // Subscriptions: 3 on this connection, 5 on the server.
        let sub = |s: &mut std::net::TcpStream, i: u8| {
            let sh = hex::encode([i; 32]);
            request(
                s,
                &format!(
                    r#"{{"id":{i},"method":"blockchain.scripthash.subscribe","params":["{sh}"]}}"#
                ),
            )
        };
        for i in 1..=3 {
            assert!(sub(&mut s, i).get("error").is_none());
        }
        let r = sub(&mut s, 4);
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("on this connection (at most 3)"),
            "{r}"
        );
        // Subscribing again to the same script is no new subscription.
        assert!(sub(&mut s, 2).get("error").is_none());
        let mut other = connect(addr);
        assert!(sub(&mut other, 10).get("error").is_none());
        assert!(sub(&mut other, 11).get("error").is_none());
        let r = sub(&mut other, 12);
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("on this server (at most 5)"),
            "{r}"
        );
        // A closed connection gives its subscriptions back.
        drop(s);
        let mut ok = false;
        for _ in 0..100 {
            if sub(&mut other, 12).get("error").is_none() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(ok, "subscriptions of a closed connection are released");
        shutdown.trigger();
    }

    #[test]
    fn a_flood_of_subscribed_connections_still_lets_a_new_client_in() {
        let mut limits = Limits::from_fd_limit(1024);
        limits.electrum_connections = 16;
        limits.electrum_per_ip = 8;
        let (addr, _rt, shutdown) = limited_server(limits);
        // Forty subscribed connections from one host, each idle after its subscription.
        let mut flood: Vec<std::net::TcpStream> = (0..40)
            .map(|i| {
                let mut s = connect(addr);
                let r = request(
                    &mut s,
                    &format!(r#"{{"id":{i},"method":"blockchain.headers.subscribe"}}"#),
                );
                assert!(r.get("error").is_none(), "{r}");
                s
            })
            .collect();
        // A new client is admitted and answered.
        let mut fresh = connect(addr);
        let r = request(&mut fresh, r#"{"id": 77, "method": "server.ping"}"#);
        assert_eq!(r["id"], 77, "{r}");
        // The oldest flood connections were closed to make room; the newest still serve.
        assert!(closed_within(&mut flood[0], Duration::from_secs(10)));
        let last = flood.last_mut().unwrap();
        let r = request(last, r#"{"id": 78, "method": "server.ping"}"#);
        assert_eq!(r["id"], 78, "{r}");
        shutdown.trigger();
    }

    /// Wait up to `within` for the server to close `s`; true if it did.
    fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
        s.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    fn request(s: &mut std::net::TcpStream, line: &str) -> Value {
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    #[test]
    fn unfinished_lines_and_idle_connections_are_closed_subscribers_are_kept() {
        let (addr, _rt, shutdown) = short_timeout_server();

        // A started line that is never finished.
        let mut partial = std::net::TcpStream::connect(addr).unwrap();
        partial
            .write_all(br#"{"id": 1, "method": "server.pi"#)
            .unwrap();
        let start = std::time::Instant::now();
        assert!(closed_within(&mut partial, Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(3));

        // A client that asked something once and then stays silent without subscribing.
        let mut idle = std::net::TcpStream::connect(addr).unwrap();
        let r = request(&mut idle, r#"{"id": 1, "method": "server.ping"}"#);
        assert!(r.get("error").is_none(), "{r}");
        let start = std::time::Instant::now();
        assert!(closed_within(&mut idle, Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(3));

        // A subscribed client stays connected well past the idle time and is still served.
        let mut sub = std::net::TcpStream::connect(addr).unwrap();
        let r = request(
            &mut sub,
            r#"{"id": 1, "method": "blockchain.headers.subscribe"}"#,
        );
        assert!(r.get("error").is_none(), "{r}");
        assert!(!closed_within(&mut sub, Duration::from_millis(2000)));
        let r = request(&mut sub, r#"{"id": 2, "method": "server.ping"}"#);
        assert_eq!(r["id"], 2, "{r}");
        shutdown.trigger();
    }

    #[test]
    fn script_hash_is_reversed_sha256_hex() {
        // Electrum protocol docs: P2PKH of 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa.
        let spk =
            bitcoin::ScriptBuf::from_hex("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac")
                .unwrap();
        assert_eq!(
            ScriptHash::from_script(&spk).to_string(),
            "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"
        );
    }

    #[test]
    fn malformed_lines_get_json_rpc_errors() {
        let node = Node::open(crate::node::NodeConfig::in_memory()).unwrap();
        let mut s = Session::default();
        let r: Value =
            serde_json::from_str(&handle_line(&node, &mut s, "{nope", 1).unwrap()).unwrap();
        assert_eq!(r["error"]["code"], -32700);
        let r: Value = serde_json::from_str(&handle_line(&node, &mut s, "42", 1).unwrap()).unwrap();
        assert_eq!(r["error"]["code"], -32600);
        let r: Value = serde_json::from_str(
            &handle_line(&node, &mut s, r#"{"id":7,"method":"no.such"}"#, 1).unwrap(),
        )
        .unwrap();
        assert_eq!(r["error"]["code"], -32601);
        assert_eq!(r["id"], 7);
        let r: Value = serde_json::from_str(
            &handle_line(
                &node,
                &mut s,
                r#"[{"id":1,"method":"server.ping"},{"id":2,"method":"blockchain.block.header","params":["x"]}]"#,
                1,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(r[0]["id"], 1);
        assert_eq!(r[0]["result"], Value::Null);
        assert_eq!(r[1]["error"]["code"], -32602);
    }

    #[test]
    fn a_thousand_header_requests_in_one_line_are_refused() {
        // The reported case: at height 101 one 60 KB line asked for ~16 MB of headers.
        let node = Node::open(crate::node::NodeConfig::in_memory()).unwrap();
        node.generate_to_script(101, &bitcoin::ScriptBuf::new_op_return([]))
            .unwrap();
        let mut s = Session::default();
        let one = r#"{"id":1,"method":"blockchain.block.headers","params":[0,2016]}"#;
        let line = format!("[{}]", vec![one; 1000].join(","));
        let reply = handle_line(&node, &mut s, &line, 1).unwrap();
        assert!(reply.len() < 1000, "{} bytes", reply.len());
        let r: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(r["error"]["code"], -32600, "{r}");
        // One such request alone is answered: 102 headers.
        let r: Value = serde_json::from_str(&handle_line(&node, &mut s, one, 1).unwrap()).unwrap();
        assert_eq!(r["result"]["count"], 102, "{r}");
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            ".{0,70}".prop_map(Value::String),
            "[0-9a-f]{64}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any line gets exactly one JSON answer and never a panic.
        #[test]
        fn any_line_gets_one_json_answer(line in ".{0,200}") {
            let node = Node::open(crate::node::NodeConfig::in_memory()).unwrap();
            let mut s = Session::default();
            if let Some(reply) = handle_line(&node, &mut s, &line, 1) {
                let v: Value = serde_json::from_str(&reply).unwrap();
                proptest::prop_assert!(v.is_object() || v.is_array());
            }
        }

        /// Every method with arbitrary parameters answers a result or an error object.
        #[test]
        fn every_method_with_any_params(
            m in proptest::sample::select(vec![
                "server.version", "server.features", "server.ping", "server.banner",
                "blockchain.headers.subscribe", "blockchain.block.header",
                "blockchain.block.headers", "blockchain.scripthash.get_history",
                "blockchain.scripthash.get_balance", "blockchain.scripthash.listunspent",
                "blockchain.scripthash.subscribe", "blockchain.scripthash.unsubscribe",
                "blockchain.transaction.get", "blockchain.transaction.get_merkle",
                "blockchain.transaction.id_from_pos", "blockchain.transaction.broadcast",
                "blockchain.estimatefee", "blockchain.relayfee", "mempool.get_fee_histogram",
            ]),
            params in proptest::collection::vec(json_value(), 0..4),
        ) {
            let node = Node::open(crate::node::NodeConfig::in_memory()).unwrap();
            let mut s = Session::default();
            let req = json!({"jsonrpc": "2.0", "id": 3, "method": m, "params": params});
            let v = handle_request(&node, &mut s, &req, 1);
            proptest::prop_assert_eq!(&v["id"], &json!(3));
            proptest::prop_assert!(v.get("result").is_some() != v.get("error").is_some());
        }
    }
}
