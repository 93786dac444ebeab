//! The shard's HTTP client to the persistence API: hyper's HTTP/1.1 client
//! over glommio sockets, with a small per-shard pool of kept-alive
//! connections. One shard's calls never share a connection with another's.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::io::{HyperStream, with_timeout};

/// Idle connections kept per shard.
const IDLE_CONNECTIONS_MAX: usize = 8;
/// How long one call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    #[error("connecting to the persistence API at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP exchange with the persistence API: {0}")]
    Http(#[from] hyper::Error),
    #[error("the persistence API did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

pub struct ApiClient {
    addr: SocketAddr,
    host: HeaderValue,
    authorization: HeaderValue,
    idle: RefCell<Vec<SendRequest<Full<Bytes>>>>,
}

impl ApiClient {
    pub fn new(addr: SocketAddr, internal_key: &str) -> Self {
        let authorization = HeaderValue::from_str(&format!("Bearer {internal_key}"))
            .expect("the operator key is a valid header value");
        let host = HeaderValue::from_str(&addr.to_string())
            .expect("a socket address is a valid header value");
        Self {
            addr,
            host,
            authorization,
            idle: RefCell::new(Vec::new()),
        }
    }

    pub async fn get(&self, path: &str) -> Result<ApiResponse, ApiCallError> {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn put(
        &self,
        path: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<ApiResponse, ApiCallError> {
        self.call(Method::PUT, path, Some((body, content_type)), &[])
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<ApiResponse, ApiCallError> {
        self.call(Method::DELETE, path, None, &[]).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<ApiResponse, ApiCallError> {
        self.post_with(path, body, content_type, &[]).await
    }

    /// A POST with headers of its own besides the usual ones.
    pub async fn post_with(
        &self,
        path: &str,
        body: Bytes,
        content_type: &'static str,
        headers: &[(&'static str, HeaderValue)],
    ) -> Result<ApiResponse, ApiCallError> {
        self.call(Method::POST, path, Some((body, content_type)), headers)
            .await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        headers: &[(&'static str, HeaderValue)],
    ) -> Result<ApiResponse, ApiCallError> {
        with_timeout(CALL_TIMEOUT, self.exchange(method, path, body, headers))
            .await
            .unwrap_or(Err(ApiCallError::Timeout(CALL_TIMEOUT)))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        headers: &[(&'static str, HeaderValue)],
    ) -> Result<ApiResponse, ApiCallError> {
        let mut sender = self.checkout().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone());
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        let body = match body {
            Some((bytes, content_type)) => {
                request = request.header(CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .expect("a request built from valid parts");
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        self.checkin(sender);
        Ok(ApiResponse { status, body })
    }

    async fn checkout(&self) -> Result<SendRequest<Full<Bytes>>, ApiCallError> {
        loop {
            let Some(mut sender) = self.idle.borrow_mut().pop() else {
                break;
            };
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = glommio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|error| ApiCallError::Connect {
                addr: self.addr,
                source: error.into(),
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(HyperStream::new(stream)).await?;
        crate::task::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "persistence API connection ended");
            }
        });
        Ok(sender)
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < IDLE_CONNECTIONS_MAX && !sender.is_closed() {
            idle.push(sender);
        }
    }
}
