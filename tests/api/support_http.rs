//! HTTP/1.1 spoken by hand over TCP, for tests that must send bytes ordinary clients refuse
//! (invalid UTF-8 in headers, duplicate framing, raw targets such as `%00` or `..`) and must
//! tell a complete response from a dropped connection or a truncated body: a handler that
//! panics drops its connection, which a pooling client would retry or hide.

#![allow(dead_code)]

use serde_json::Value;
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One request as bytes: method, raw target, headers in order, body. `Host` is added unless
/// present; `Content-Length` is added unless `framing` says the case sets its own.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The case writes its own `Content-Length` / `Transfer-Encoding` headers.
    pub own_framing: bool,
}

impl RawRequest {
    /// A request without headers or body.
    pub fn new(method: &str, target: impl AsRef<[u8]>) -> Self {
        Self {
            method: method.into(),
            target: target.as_ref().to_vec(),
            headers: Vec::new(),
            body: Vec::new(),
            own_framing: false,
        }
    }

    /// Adds a header (any bytes).
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Adds `Authorization: Bearer <token>` when a token is given.
    pub fn bearer(self, token: Option<&str>) -> Self {
        match token {
            Some(t) => self.header("authorization", format!("Bearer {t}")),
            None => self,
        }
    }

    /// Sets the body.
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json_text(self, body: impl AsRef<[u8]>) -> Self {
        self.header("content-type", "application/json").body(body)
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The bytes on the wire; `connection_close` asks the server to close after answering.
    pub fn to_bytes(&self, connection_close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self.has_header("host") {
            out.extend_from_slice(b"Host: localhost\r\n");
        }
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.own_framing {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        if connection_close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response read off the wire, with its framing checked.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of a header (lossy text).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the body is a JSON error document: `{"detail": "..."}` or field errors
    /// `{"field": ["message", ...]}`.
    pub fn is_json_error(&self) -> bool {
        let ct_json = self
            .header("content-type")
            .is_some_and(|c| c.contains("json"));
        let Some(Value::Object(m)) = self.json() else {
            return false;
        };
        ct_json
            && !m.is_empty()
            && (m.get("detail").is_some_and(Value::is_string)
                || m.values().all(|v| {
                    v.as_array()
                        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
                }))
    }
}

/// Why no complete response came.
#[derive(Debug)]
pub enum RawError {
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// The connection ended (or failed) before any byte of a response.
    NoResponse(String),
    /// A response started but ended early (head or body cut).
    Truncated(String),
    /// Bytes that are not an HTTP/1.1 response.
    Malformed(String),
    /// Nothing complete within the time limit.
    Timeout,
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Reads consecutive responses from one connection.
pub struct ResponseReader<R> {
    inner: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> ResponseReader<R> {
    /// Wraps a readable stream.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            eof: false,
        }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.inner.read(&mut chunk).await?;
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn need(&mut self, n: usize, what: &str) -> Result<(), RawError> {
        while self.buf.len() < n {
            match self.fill().await {
                Ok(0) => return Err(RawError::Truncated(format!("EOF inside {what}"))),
                Ok(_) => {}
                Err(e) => return Err(RawError::Truncated(format!("{what}: {e}"))),
            }
        }
        Ok(())
    }

    async fn line(&mut self, what: &str) -> Result<Vec<u8>, RawError> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            match self.fill().await {
                Ok(0) => return Err(RawError::Truncated(format!("EOF inside {what}"))),
                Ok(_) => {}
                Err(e) => return Err(RawError::Truncated(format!("{what}: {e}"))),
            }
        }
    }

    /// The next response, interim (1xx) ones included.
    pub async fn next(&mut self) -> Result<RawResponse, RawError> {
        // Head: wait for the first byte separately so "nothing at all" is told apart.
        while self.buf.is_empty() {
            match self.fill().await {
                Ok(0) => return Err(RawError::NoResponse("connection closed".into())),
                Ok(_) => {}
                Err(e) => return Err(RawError::NoResponse(e.to_string())),
            }
        }
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            match self.fill().await {
                Ok(0) => return Err(RawError::Truncated("EOF inside the head".into())),
                Ok(_) => {}
                Err(e) => return Err(RawError::Truncated(format!("head: {e}"))),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        if parts.next() != Some("HTTP/1.1") {
            return Err(RawError::Malformed(format!("status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RawError::Malformed(format!("status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for l in lines {
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| RawError::Malformed(format!("header line {l:?}")))?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let mut body = Vec::new();
        if (100..200).contains(&status) || status == 204 || status == 304 {
            // no body
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let size_line = self.line("a chunk size").await?;
                let size_text = String::from_utf8_lossy(&size_line);
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| RawError::Malformed(format!("chunk size {size_text:?}")))?;
                if size == 0 {
                    // Trailers end with an empty line.
                    while !self.line("the trailers").await?.is_empty() {}
                    break;
                }
                self.need(size + 2, "a chunk").await?;
                body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| RawError::Malformed(format!("content-length {len:?}")))?;
            self.need(len, "the body").await?;
            body = self.buf.drain(..len).collect();
        } else {
            // Delimited by the end of the connection.
            while !self.eof {
                if let Err(e) = self.fill().await {
                    return Err(RawError::Truncated(format!("body: {e}")));
                }
            }
            body = std::mem::take(&mut self.buf);
        }
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads its final response.
pub async fn exchange(addr: SocketAddr, req: &RawRequest) -> Result<RawResponse, RawError> {
    exchange_bytes(addr, &req.to_bytes(true)).await
}

/// Sends raw bytes on a fresh connection and reads the final response (1xx skipped), within
/// 60 seconds.
pub async fn exchange_bytes(addr: SocketAddr, bytes: &[u8]) -> Result<RawResponse, RawError> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await.map_err(RawError::Connect)?;
        let (rd, mut wr) = stream.split();
        // The server may answer (and close) before reading everything, e.g. 413 or 431: a
        // failed write is not an error as long as a response comes.
        let write = async {
            let _ = wr.write_all(bytes).await;
            let _ = wr.flush().await;
        };
        let mut reader = ResponseReader::new(rd);
        let read = async {
            loop {
                let r = reader.next().await?;
                if r.status >= 200 {
                    return Ok(r);
                }
            }
        };
        let (_, response) = tokio::join!(write, read);
        response
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .unwrap_or(Err(RawError::Timeout))
}
