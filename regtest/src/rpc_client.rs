//! A small blocking JSON-RPC client for Bitcoin Core's HTTP interface (and this crate's node).
//!
//! It keeps one HTTP/1.1 connection alive between calls, authenticates with a user and password
//! or with Core's cookie file (`__cookie__:HEX`), and bounds every wait with a timeout. It has no
//! dependency on an async runtime, so the CLI, the test harness and other crates can use it
//! from plain threads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The largest response body the client accepts (Core's `getblock` of a full block fits).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// The longest status, header, chunk-size or trailer line the client reads.
const MAX_LINE: usize = 64 * 1024;

/// How the client proves it may call the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    None,
    /// HTTP basic authentication with a user and a password.
    UserPass(String, String),
    /// The cookie file Core writes in its datadir (`user:password` on one line), read at each
    /// (re)connection so that a restarted node's new cookie is picked up.
    CookieFile(PathBuf),
}

/// Errors of [`RpcClient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcClientError {
    /// The URL is not `http://HOST:PORT[/PATH]`.
    #[error("invalid rpc url {0:?}")]
    Url(String),
    /// Connecting, writing or reading failed (includes timeouts).
    #[error("rpc transport error talking to {addr}")]
    Io {
        /// The server address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The cookie file could not be read.
    #[error("cannot read rpc cookie file {path}")]
    Cookie {
        /// The cookie file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered something that is not a JSON-RPC reply.
    #[error("invalid rpc response (http status {status}): {detail}")]
    Response {
        /// The HTTP status code.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// The server refused the credentials (HTTP 401).
    #[error("rpc authentication refused by {0}")]
    Unauthorized(String),
    /// The server returned a JSON-RPC error object.
    #[error("rpc error {code}: {message}")]
    Rpc {
        /// Core's RPC error code (e.g. -26 for a rejected transaction).
        code: i64,
        /// The error message (for rejected transactions: Core's reject reason).
        message: String,
    },
}

impl RpcClientError {
    /// The JSON-RPC error code when the server answered with an error object.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            RpcClientError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A blocking JSON-RPC client over HTTP/1.1 with keep-alive.
#[derive(Debug)]
pub struct RpcClient {
    host: String,
    path: String,
    auth: Auth,
    timeout: Duration,
    conn: Mutex<Option<BufReader<TcpStream>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl RpcClient {
    /// A client for `url` (`http://HOST:PORT[/PATH]`; a bare `HOST:PORT` is accepted too).
    ///
    /// No connection is made until the first call.
    ///
    /// # Errors
    ///
    /// [`RpcClientError::Url`] if the URL is not an `http` URL with a host and port.
    pub fn new(url: &str, auth: Auth) -> Result<Self, RpcClientError> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        if rest.contains("://") {
            return Err(RpcClientError::Url(url.to_string()));
        }
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !has_port {
            return Err(RpcClientError::Url(url.to_string()));
        }
        Ok(RpcClient {
            host: host.to_string(),
            path: path.to_string(),
            auth,
            timeout: Duration::from_secs(60),
            conn: Mutex::new(None),
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Set the timeout of each connect, read and write, and of each whole call (default 60 s):
    /// a call fails when its reply is not complete within this time, however slowly the
    /// server keeps sending.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `HOST:PORT` this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Call `method` with positional `params` and return its `result`.
    ///
    /// A call on a kept-alive connection that the server closed is retried once on a fresh
    /// connection (only when nothing of the reply was read, so a call is never executed twice
    /// because of a late reply).
    ///
    /// # Errors
    ///
    /// [`RpcClientError::Rpc`] when the server answers with an error object; transport, auth
    /// and protocol errors otherwise.
    pub fn call(&self, method: &str, params: &[Value]) -> Result<Value, RpcClientError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let reply = self.post(&body.to_string())?;
        let mut reply: Value = reply;
        match reply.get("error") {
            Some(Value::Null) | None => {}
            Some(err) => {
                let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
                let message = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                return Err(RpcClientError::Rpc { code, message });
            }
        }
        Ok(reply
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// Call `method` and deserialize its result.
    ///
    /// # Errors
    ///
    /// As [`RpcClient::call`], plus [`RpcClientError::Response`] if the result has another shape.
    pub fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: &[Value],
    ) -> Result<T, RpcClientError> {
        let v = self.call(method, params)?;
        serde_json::from_value(v).map_err(|e| RpcClientError::Response {
            status: 200,
            detail: format!("unexpected result of {method}: {e}"),
        })
    }

    fn io_err(&self, source: std::io::Error) -> RpcClientError {
        RpcClientError::Io {
            addr: self.host.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<BufReader<TcpStream>, RpcClientError> {
        let addrs: Vec<SocketAddr> = self
            .host
            .to_socket_addrs()
            .map_err(|e| self.io_err(e))?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.timeout))
                        .map_err(|e| self.io_err(e))?;
                    s.set_write_timeout(Some(self.timeout))
                        .map_err(|e| self.io_err(e))?;
                    let _ = s.set_nodelay(true);
                    return Ok(BufReader::new(s));
                }
                Err(e) => last = e,
            }
        }
        Err(self.io_err(last))
    }

    fn auth_header(&self) -> Result<Option<String>, RpcClientError> {
        let userpass = match &self.auth {
            Auth::None => return Ok(None),
            Auth::UserPass(u, p) => format!("{u}:{p}"),
            Auth::CookieFile(path) => read_cookie(path)?,
        };
        Ok(Some(format!(
            "Authorization: Basic {}\r\n",
            base64_encode(userpass.as_bytes())
        )))
    }

    fn post(&self, body: &str) -> Result<Value, RpcClientError> {
        let auth = self.auth_header()?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\nConnection: keep-alive\r\n\r\n{}",
            self.path,
            self.host,
            auth.as_deref().unwrap_or(""),
            body.len(),
            body
        );
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reused = guard.is_some();
        let deadline = Instant::now() + self.timeout;
        let mut conn = match guard.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let result = match exchange(&mut conn, &request, deadline) {
            Err(Exchange::BeforeReply(_)) if reused => {
                // The server closed the idle connection: retry once on a new one.
                conn = self.connect()?;
                exchange(&mut conn, &request, deadline)
            }
            other => other,
        };
        match result {
            Ok((status, keep_alive, body)) => {
                if keep_alive {
                    *guard = Some(conn);
                }
                drop(guard);
                self.parse_reply(status, &body)
            }
            Err(Exchange::BeforeReply(e)) | Err(Exchange::DuringReply(e)) => Err(self.io_err(e)),
            Err(Exchange::Protocol(detail)) => Err(RpcClientError::Response { status: 0, detail }),
        }
    }

    fn parse_reply(&self, status: u16, body: &[u8]) -> Result<Value, RpcClientError> {
        if status == 401 {
            return Err(RpcClientError::Unauthorized(self.host.clone()));
        }
        serde_json::from_slice::<Value>(body).map_err(|_| RpcClientError::Response {
            status,
            detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        })
    }
}

enum Exchange {
    BeforeReply(std::io::Error),
    DuringReply(std::io::Error),
    Protocol(String),
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "rpc call did not complete in time",
    )
}

/// The time left until `deadline`, or a timeout error when it has passed.
fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(timed_out())
    } else {
        Ok(left)
    }
}

/// A reader over the connection whose every read waits at most until the call's deadline (the
/// per-read timeout alone would let a server that trickles bytes hold a call forever).
struct DeadlineReader<'a> {
    conn: &'a mut BufReader<TcpStream>,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for DeadlineReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.conn.buffer().is_empty() {
            let left = remaining(self.deadline)?;
            // The stream's own timeout stays the upper bound of one read.
            let per_read = self.conn.get_ref().read_timeout()?.unwrap_or(left);
            self.conn
                .get_ref()
                .set_read_timeout(Some(left.min(per_read)))?;
            let r = self.conn.fill_buf().map(<[u8]>::len);
            // Restore the per-read timeout for the next call on a kept-alive connection.
            self.conn.get_ref().set_read_timeout(Some(per_read))?;
            if let Err(e) = r {
                return Err(if Instant::now() >= self.deadline {
                    timed_out()
                } else {
                    e
                });
            }
        }
        self.conn.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.conn.consume(amt);
    }
}

/// Read one line of at most [`MAX_LINE`] bytes into `line` (cleared first); a longer line is a
/// protocol error, found without holding more than the cap in memory.
fn read_line_bounded(
    r: &mut DeadlineReader<'_>,
    line: &mut String,
    io: fn(std::io::Error) -> Exchange,
) -> Result<usize, Exchange> {
    line.clear();
    let n = r.take(MAX_LINE as u64 + 1).read_line(line).map_err(io)?;
    if n > MAX_LINE {
        return Err(Exchange::Protocol("http line too long".into()));
    }
    Ok(n)
}

/// Write one request and read one response: (status, keep-alive, body), all before `deadline`.
fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &str,
    deadline: Instant,
) -> Result<(u16, bool, Vec<u8>), Exchange> {
    let left = remaining(deadline).map_err(Exchange::BeforeReply)?;
    let stream = conn.get_mut();
    let per_write = stream
        .write_timeout()
        .map_err(Exchange::BeforeReply)?
        .unwrap_or(left);
    stream
        .set_write_timeout(Some(left.min(per_write)))
        .map_err(Exchange::BeforeReply)?;
    let written = stream.write_all(request.as_bytes());
    stream
        .set_write_timeout(Some(per_write))
        .map_err(Exchange::BeforeReply)?;
    written.map_err(Exchange::BeforeReply)?;
    let mut conn = DeadlineReader { conn, deadline };
    let conn = &mut conn;
    let mut line = String::new();
    let n = read_line_bounded(conn, &mut line, Exchange::BeforeReply)?;
    if n == 0 {
        return Err(Exchange::BeforeReply(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before the reply",
        )));
    }
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Exchange::Protocol(format!("bad http status line {line:?}")))?;
    let mut content_length: Option<usize> = None;
    let mut keep_alive = version == "HTTP/1.1";
    let mut chunked = false;
    let mut head_len = n;
    loop {
        let n = read_line_bounded(conn, &mut line, Exchange::DuringReply)?;
        if n == 0 {
            return Err(Exchange::DuringReply(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the reply headers",
            )));
        }
        head_len += n;
        if head_len > MAX_RESPONSE {
            return Err(Exchange::Protocol("http reply headers too large".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    content_length =
                        Some(value.parse().map_err(|_| {
                            Exchange::Protocol(format!("bad content-length {value:?}"))
                        })?)
                }
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let body = if chunked {
        read_chunked(conn)?
    } else if let Some(len) = content_length {
        if len > MAX_RESPONSE {
            return Err(Exchange::Protocol(format!(
                "response of {len} bytes too large"
            )));
        }
        let mut body = vec![0; len];
        conn.read_exact(&mut body).map_err(Exchange::DuringReply)?;
        body
    } else {
        keep_alive = false;
        let mut body = Vec::new();
        conn.take(MAX_RESPONSE as u64)
            .read_to_end(&mut body)
            .map_err(Exchange::DuringReply)?;
        body
    };
    Ok((status, keep_alive, body))
}

fn read_chunked(conn: &mut DeadlineReader<'_>) -> Result<Vec<u8>, Exchange> {
    let mut body = Vec::new();
    let mut line = String::new();
    let mut trailer_len = 0usize;
    loop {
        let n = read_line_bounded(conn, &mut line, Exchange::DuringReply)?;
        if n == 0 {
            return Err(Exchange::DuringReply(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in a chunked reply",
            )));
        }
        let size_str = line.trim().split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| Exchange::Protocol(format!("bad chunk size {size_str:?}")))?;
        let end = body
            .len()
            .checked_add(size)
            .filter(|&end| end <= MAX_RESPONSE)
            .ok_or_else(|| Exchange::Protocol("chunked response too large".into()))?;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                let n = read_line_bounded(conn, &mut line, Exchange::DuringReply)?;
                trailer_len += n;
                if n == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
                if trailer_len > MAX_RESPONSE {
                    return Err(Exchange::Protocol("chunked trailers too large".into()));
                }
            }
        }
        let start = body.len();
        body.resize(end, 0);
        conn.read_exact(&mut body[start..])
            .map_err(Exchange::DuringReply)?;
        read_line_bounded(conn, &mut line, Exchange::DuringReply)?;
    }
}

/// Read a cookie file (`user:password`, as Core and this node write it).
///
/// # Errors
///
/// [`RpcClientError::Cookie`] if it cannot be read.
pub fn read_cookie(path: &Path) -> Result<String, RpcClientError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| RpcClientError::Cookie {
            path: path.to_path_buf(),
            source,
        })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (for the `Authorization` header).
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decode standard base64 (padding optional); `None` on any invalid character.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "__cookie__:ab01",
        ] {
            let enc = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&enc).as_deref(), Some(s.as_bytes()));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    /// A one-connection server that reads the request and then lets `reply` write.
    fn fake_server(reply: impl FnOnce(TcpStream) + Send + 'static) -> RpcClient {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            reply(s);
        });
        RpcClient::new(&format!("http://{addr}"), Auth::None).unwrap()
    }

    #[test]
    fn huge_chunk_size_is_an_error_not_an_overflow() {
        let client = fake_server(|mut s| {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\nffffffffffffffff\r\n",
            );
            std::thread::sleep(Duration::from_secs(2));
        })
        .with_timeout(Duration::from_secs(10));
        let err = client.call("getblockcount", &[]).unwrap_err();
        assert!(
            matches!(&err, RpcClientError::Response { detail, .. } if detail.contains("too large")),
            "{err:?}"
        );
    }

    #[test]
    fn overlong_header_line_is_refused_without_waiting_for_its_end() {
        let client = fake_server(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Long: ");
            let junk = vec![b'a'; 256 * 1024];
            let _ = s.write_all(&junk);
            // Never finish the line; stay open longer than the client waits.
            std::thread::sleep(Duration::from_secs(15));
        })
        .with_timeout(Duration::from_secs(10));
        let start = Instant::now();
        let err = client.call("getblockcount", &[]).unwrap_err();
        assert!(
            matches!(&err, RpcClientError::Response { detail, .. } if detail.contains("too long")),
            "{err:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_trickling_server_cannot_hold_a_call_past_its_timeout() {
        let client = fake_server(|mut s| {
            // One byte every 100 ms: each read succeeds within the per-read timeout.
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: "
                .iter()
                .chain([b'a'; 100].iter())
            {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .with_timeout(Duration::from_millis(800));
        let start = Instant::now();
        let err = client.call("getblockcount", &[]).unwrap_err();
        let elapsed = start.elapsed();
        assert!(
            matches!(&err, RpcClientError::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
            "{err:?}"
        );
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[test]
    fn url_parsing() {
        assert!(RpcClient::new("http://127.0.0.1:18443", Auth::None).is_ok());
        assert!(RpcClient::new("127.0.0.1:18443/wallet/x", Auth::None).is_ok());
        assert!(RpcClient::new("https://127.0.0.1:18443", Auth::None).is_err());
        assert!(RpcClient::new("http://127.0.0.1", Auth::None).is_err());
    }
}
