//! A minimal HTTP/1.1 client: one request at a time per connection, kept
//! alive or (like a browser's beacon from a page that is going away) closed
//! after one request; responses framed by `Content-Length` (what axum sends
//! for JSON). One `write` per request and usually one `read` per response, so the
//! generator spends its share of the CPU on syscalls, not on a client stack.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    host: String,
    /// Each request says `Connection: close`: the caller makes one and
    /// drops the client.
    close: bool,
    request: Vec<u8>,
    response: Vec<u8>,
    body_at: usize,
}

/// Status and body of the last response (borrowed from the client).
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    /// A keep-alive connection.
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        Self::open(addr, false).await
    }

    /// A connection for one request, which asks the server to close it.
    pub async fn connect_for_one(addr: SocketAddr) -> io::Result<Client> {
        Self::open(addr, true).await
    }

    async fn open(addr: SocketAddr, close: bool) -> io::Result<Client> {
        assert!(
            addr.ip().is_loopback(),
            "benchmarks target loopback addresses only, not {addr}"
        );
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            host: addr.to_string(),
            close,
            request: Vec::with_capacity(8 * 1024),
            response: Vec::with_capacity(8 * 1024),
            body_at: 0,
        })
    }

    /// Sends one request and reads its whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<Response<'_>> {
        self.request.clear();
        self.request.extend_from_slice(method.as_bytes());
        self.request.push(b' ');
        self.request.extend_from_slice(path.as_bytes());
        self.request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.request.extend_from_slice(self.host.as_bytes());
        self.request.extend_from_slice(b"\r\n");
        if self.close {
            self.request.extend_from_slice(b"Connection: close\r\n");
        }
        if let Some(ct) = content_type {
            self.request.extend_from_slice(b"Content-Type: ");
            self.request.extend_from_slice(ct.as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        if method != "GET" || !body.is_empty() {
            self.request.extend_from_slice(b"Content-Length: ");
            self.request
                .extend_from_slice(body.len().to_string().as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await?;
        let status = self.read_response().await?;
        Ok(Response {
            status,
            body: &self.response[self.body_at..],
        })
    }

    async fn read_response(&mut self) -> io::Result<u16> {
        self.response.clear();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.response.extend_from_slice(&chunk[..n]);
            if let Some(at) = find(&self.response, b"\r\n\r\n") {
                break at + 4;
            }
            if self.response.len() > 64 * 1024 {
                return Err(invalid("response head over 64 KiB"));
            }
        };
        let head = std::str::from_utf8(&self.response[..head_end])
            .map_err(|_| invalid("response head is not UTF-8"))?;
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line in {head:?}")))?;
        let mut length = None;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(invalid("chunked responses are not supported"));
                }
            }
        }
        let length = length.ok_or_else(|| invalid("response without Content-Length"))?;
        while self.response.len() < head_end + length {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection mid-body",
                ));
            }
            self.response.extend_from_slice(&chunk[..n]);
        }
        self.body_at = head_end;
        self.response.truncate(head_end + length);
        Ok(status)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One blocking-free GET returning status and body, on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, Vec<u8>)> {
    let mut client = Client::connect(addr).await?;
    let r = client.request("GET", path, None, &[]).await?;
    Ok((r.status, r.body.to_vec()))
}
