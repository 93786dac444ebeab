//! `GET /v1/ws`: authenticate the user token, register the connection on
//! this shard, answer 101, then hand the socket to tungstenite.

use std::cell::RefCell;
use std::rc::Rc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use hyper::{Request, Response, StatusCode};

use super::{Body, error};
use crate::auth;
use crate::error::EngineError;
use crate::home::outbound::Outbound;
use crate::io::{ConnIo, HyperStream};
use crate::session::{self, Session};
use crate::shard::Shard;

/// A connection's read buffer: a few client frames' worth; it grows for a
/// larger frame (tungstenite reserves a frame's length once its header is
/// read). It is allocated for every connection, idle or not, so it is most
/// of an idle connection's memory.
const READ_BUFFER_BYTES: usize = 1024;
/// tungstenite writes only its own control frames (pongs, close answers),
/// into the outbound queue; the buffer need not be large.
const WRITE_BUFFER_BYTES: usize = 1024;

fn header_has(request: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
}

pub async fn handle(shard: Rc<Shard>, mut request: Request<Incoming>) -> Response<Body> {
    if shard.is_shutting_down() {
        return error(&EngineError::ShuttingDown);
    }
    if !header_has(&request, UPGRADE, "websocket") || !header_has(&request, CONNECTION, "upgrade") {
        return error(&EngineError::UpgradeRequired);
    }
    let version_ok = request
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = request
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .cloned()
        .filter(|_| version_ok)
    else {
        return error(&EngineError::InvalidRequest(
            "a WebSocket upgrade needs Sec-WebSocket-Version: 13 and a key".into(),
        ));
    };
    let token = match crate::requests::upgrade_token(request.headers(), request.uri()) {
        Ok(token) => token,
        Err(refused) => return error(&refused),
    };
    let auth::UserIdentity {
        app,
        user,
        issued_at,
        expires_at,
    } = match auth::verify_user(&shard, &token).await {
        Ok(identity) => identity,
        Err(refused) => return error(&refused),
    };
    let limits = &shard.config.limits;
    let out = Rc::new(Outbound::new(
        limits.outbound_frames_max,
        limits.outbound_bytes_max,
        Rc::clone(&shard.home.flusher),
    ));
    let conn = match shard.home.connections.borrow_mut().register(
        app,
        &user,
        issued_at,
        Rc::clone(&out),
        limits.connections_per_user_max,
    ) {
        Ok(conn) => conn,
        Err(refused) => return error(&refused),
    };
    shard.metrics.connections_open.add(1);
    shard.metrics.connections_total.inc();

    let on_upgrade = hyper::upgrade::on(&mut request);
    // Buffers sized for chat frames, not tungstenite's 128 KiB defaults: the
    // read buffer is zero-filled to its size on first use, which alone would
    // cost 128 KiB per idle connection.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(limits.frame_bytes_max))
        .max_frame_size(Some(limits.frame_bytes_max));
    let session = Session {
        shard: Rc::clone(&shard),
        conn,
        app,
        user,
        out,
        expires_at: std::cell::Cell::new(expires_at),
    };
    crate::task::spawn(async move {
        let (socket, io) = match on_upgrade
            .await
            .map(|upgraded| upgraded.downcast::<HyperStream>())
        {
            Ok(Ok(parts)) => {
                let socket = Rc::new(RefCell::new(parts.io.into_inner()));
                let io = ConnIo::new(parts.read_buf, Rc::clone(&socket), Rc::clone(&session.out));
                (socket, io)
            }
            _ => {
                tracing::debug!("WebSocket upgrade did not complete");
                session.end();
                return;
            }
        };
        let stream = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        session::run(session, socket, stream).await;
    });

    let accept = derive_accept_key(key.as_bytes());
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}
