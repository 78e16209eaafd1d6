//! One HTTP/1.1 keep-alive connection per task, on hyper's low-level client:
//! no pool and no locks, so the generator's CPU goes into requests, not
//! bookkeeping (it shares the machine with the server it measures). A
//! connection that has closed is re-opened before the next request; a request
//! that failed after it was sent is reported, never retried (its outcome is
//! unknown, and the audit must know what the tool did).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Where a target listens: `http://host:port` resolved once.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub base: String,
}

impl Endpoint {
    pub async fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// URLs are supported, not {url:?}"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let addr = tokio::net::lookup_host(authority)
            .await
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to nothing"))?;
        let host = HeaderValue::from_str(authority).map_err(|e| format!("bad host: {e}"))?;
        Ok(Endpoint {
            addr,
            host,
            base: format!("http://{authority}"),
        })
    }
}

/// The base URLs of `--url`: one, or a cluster's nodes separated by commas
/// (`http://127.0.0.1:8081,http://127.0.0.1:8082`). An empty entry is an
/// error rather than skipped: a stray comma usually means a node was left out.
pub fn split_urls(list: &str) -> Result<Vec<&str>, String> {
    let urls: Vec<&str> = list.split(',').map(str::trim).collect();
    if urls.iter().any(|url| url.is_empty()) {
        return Err(format!("--url {list:?} has an empty entry"));
    }
    Ok(urls)
}

/// The servers a run spreads its connections over: one, or every node of a
/// cluster (any node answers any single-SKU request). Never empty, so
/// picking one by index cannot fail.
#[derive(Clone, Debug)]
pub struct Endpoints(Vec<Endpoint>);

impl Endpoints {
    /// A comma-separated list of base URLs (see `split_urls`).
    pub async fn parse(list: &str) -> Result<Endpoints, String> {
        let mut endpoints = Vec::new();
        for url in split_urls(list)? {
            endpoints.push(Endpoint::parse(url).await?);
        }
        Ok(Endpoints(endpoints))
    }

    /// Connection `k`'s server, round-robin: `n` connections split evenly
    /// over the nodes, so each node takes its share of the load.
    pub fn for_connection(&self, k: usize) -> &Endpoint {
        &self.0[k % self.0.len()]
    }

    /// The first one: where the catalog is written and the audit asks.
    pub fn first(&self) -> &Endpoint {
        self.for_connection(0)
    }

    pub fn all(&self) -> &[Endpoint] {
        &self.0
    }
}

/// A bearer key as a ready header value.
pub fn bearer(key: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| "invalid API key".to_string())
}

/// One request.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub body: Option<(&'static str, Bytes)>,
    pub key: Option<&'a HeaderValue>,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str, key: Option<&'a HeaderValue>) -> Call<'a> {
        Call {
            method: Method::GET,
            path,
            body: None,
            key,
        }
    }

    pub fn json(
        method: Method,
        path: &'a str,
        key: Option<&'a HeaderValue>,
        body: String,
    ) -> Call<'a> {
        Call {
            method,
            path,
            body: Some(("application/json", Bytes::from(body))),
            key,
        }
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// `X-Next-Cursor` (feeds), when present: opaque text, sent back as is.
    pub cursor: Option<String>,
}

#[derive(Debug)]
pub enum CallError {
    Connect(std::io::Error),
    Http(hyper::Error),
    Timeout,
    Request(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "connect: {e}"),
            CallError::Http(e) => write!(f, "http: {e}"),
            CallError::Timeout => write!(f, "timed out"),
            CallError::Request(e) => write!(f, "request: {e}"),
        }
    }
}

pub struct Conn {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
}

impl Conn {
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Conn {
        Conn {
            endpoint,
            sender: None,
            timeout,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let stream = tokio::net::TcpStream::connect(self.endpoint.addr)
            .await
            .map_err(CallError::Connect)?;
        stream.set_nodelay(true).map_err(CallError::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(CallError::Http)?;
        tokio::spawn(async move {
            // Ends when the server closes or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// A sender that is ready to take a request (re-opened if it closed).
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, CallError> {
        let usable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.sender = Some(self.connect().await?);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| CallError::Request("no connection".into()))
    }

    pub async fn call(&mut self, call: Call<'_>) -> Result<Reply, CallError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.call_inner(call)).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may still carry the late answer: drop it.
                self.sender = None;
                Err(CallError::Timeout)
            }
        }
    }

    async fn call_inner(&mut self, call: Call<'_>) -> Result<Reply, CallError> {
        let host = self.endpoint.host.clone();
        let mut builder = Request::builder()
            .method(call.method)
            .uri(call.path)
            .header(HOST, host);
        if let Some(key) = call.key {
            builder = builder.header(AUTHORIZATION, key.clone());
        }
        let body = match call.body {
            Some((content_type, body)) => {
                builder = builder.header(CONTENT_TYPE, content_type);
                body
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(body))
            .map_err(|e| CallError::Request(e.to_string()))?;
        let sender = self.ready().await?;
        let result = sender.send_request(request).await;
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                self.sender = None;
                return Err(CallError::Http(e));
            }
        };
        let status = response.status();
        let cursor = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(CallError::Http(e));
            }
        };
        Ok(Reply {
            status,
            body,
            cursor,
        })
    }
}

/// The reservation id of a 201 body (`"id":"64"` or `"id":64`), without a
/// full JSON parse: the generator reads thousands of these per second.
pub fn reservation_id(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("\"id\"")? + 4;
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_are_read_from_both_shapes() {
        assert_eq!(reservation_id(br#"{"id":"64","state":"held"}"#), Some(64));
        assert_eq!(reservation_id(br#"{"id": 7, "state":"held"}"#), Some(7));
        assert_eq!(reservation_id(br#"{"state":"held"}"#), None);
        assert_eq!(reservation_id(br#"{"id":"x"}"#), None);
    }

    #[test]
    fn url_lists_split_on_commas() {
        assert_eq!(
            split_urls("http://127.0.0.1:8080"),
            Ok(vec!["http://127.0.0.1:8080"])
        );
        assert_eq!(
            split_urls("http://127.0.0.1:8081, http://127.0.0.1:8082,http://127.0.0.1:8083"),
            Ok(vec![
                "http://127.0.0.1:8081",
                "http://127.0.0.1:8082",
                "http://127.0.0.1:8083"
            ])
        );
        assert!(split_urls("").is_err());
        assert!(split_urls("http://127.0.0.1:8081,").is_err());
        assert!(split_urls("http://127.0.0.1:8081,,http://127.0.0.1:8082").is_err());
    }

    #[tokio::test]
    async fn connections_go_round_robin_over_the_nodes() {
        let nodes =
            Endpoints::parse("http://127.0.0.1:8081,http://127.0.0.1:8082/,http://127.0.0.1:8083")
                .await
                .expect("three nodes");
        assert_eq!(nodes.all().len(), 3);
        let ports: Vec<u16> = (0..7)
            .map(|k| nodes.for_connection(k).addr.port())
            .collect();
        assert_eq!(ports, [8081, 8082, 8083, 8081, 8082, 8083, 8081]);
        assert_eq!(nodes.first().base, "http://127.0.0.1:8081");
        let one = Endpoints::parse("http://127.0.0.1:8080")
            .await
            .expect("one");
        assert!((0..5).all(|k| one.for_connection(k).addr.port() == 8080));
        assert!(Endpoints::parse("127.0.0.1:8080").await.is_err());
    }
}
