//! The engine's HTTP surface, served by hyper on every shard's listener:
//! `GET /v1/ws` (the WebSocket upgrade), `POST /v1/chats/{n}/messages`
//! (publish with the app token), `GET /v1/chats/{n}/presence` (who of a
//! chat's members is online), `GET /healthz`, `GET /metrics`.

mod presence;
mod publish;
mod upgrade;

use std::convert::Infallible;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use chat_http_conn::Watch;
use futures_util::future::Either;
use glommio::net::TcpStream;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};

use crate::error::EngineError;
use crate::io::HyperStream;
use crate::shard::Shard;

pub type Body = Full<Bytes>;

/// Serves one accepted TCP connection until it closes, upgrades, or runs
/// past one of its limits (`chat_http_conn`: the header read from accept,
/// the request, the idle spell between requests), whichever comes first.
/// Past a limit the connection is dropped, which closes the socket. An
/// upgrade ends this future, so a WebSocket is not subject to the limits.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, watch: Watch) {
    let service_watch = watch.clone();
    let service = hyper::service::service_fn(move |request| {
        let shard = Rc::clone(&shard);
        service_watch.on_request();
        let answered = service_watch.clone();
        async move {
            let response = route(shard, request).await;
            answered.on_response();
            Ok::<_, Infallible>(response)
        }
    });
    // hyper's own head timer is off (it needs a timer, and would count the
    // idle spell as head time); the watch does it.
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(HyperStream::watched(stream, watch.clone()), service)
        .with_upgrades();
    let deadline = chat_http_conn::expired(&watch, glommio::timer::sleep);
    match futures_util::future::select(pin!(connection), pin!(deadline)).await {
        Either::Left((Err(error), _)) => tracing::debug!(%error, "HTTP connection ended"),
        Either::Left((Ok(()), _)) => {}
        Either::Right((limit, _)) => {
            tracing::debug!(limit, "closing a connection past its {limit} timeout")
        }
    }
}

async fn route(shard: Rc<Shard>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    match path.as_str() {
        "/healthz" if method == Method::GET => match crate::health::check(&shard.all_metrics) {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(reason) => error(&EngineError::Unavailable(reason)),
        },
        "/metrics" if method == Method::GET => {
            shard.refresh_gauges();
            // Hundreds of formatted lines (17 ms of one shard's CPU in a
            // debug build, measured), read from atomics only: written on the
            // shard's blocking thread, they hold none of its timers.
            let all_metrics = Arc::clone(&shard.all_metrics);
            let body = glommio::executor()
                .spawn_blocking(move || crate::metrics::render(&all_metrics))
                .await;
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                "text/plain; version=0.0.4"
                    .parse()
                    .expect("a static header"),
            );
            response
        }
        "/v1/ws" if method == Method::GET => upgrade::handle(shard, request).await,
        "/healthz" | "/metrics" | "/v1/ws" => error(&EngineError::MethodNotAllowed),
        _ => {
            if let Some(chat) = crate::requests::chat_of_path(&path) {
                return match method {
                    Method::POST => publish::handle(shard, request, chat).await,
                    _ => error(&EngineError::MethodNotAllowed),
                };
            }
            match crate::requests::presence_chat_of_path(&path) {
                Some(chat) if method == Method::GET => presence::handle(shard, request, chat).await,
                Some(_) => error(&EngineError::MethodNotAllowed),
                None => error(&EngineError::RouteNotFound),
            }
        }
    }
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

pub fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a static header"),
    );
    response
}

pub fn error(error: &EngineError) -> Response<Body> {
    json(error.status(), error.http_body())
}
