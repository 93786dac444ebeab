//! `POST /v1/chats/{n}/messages` with the app token: an app server
//! publishes as one of its users. Answers 201 `{"chat","number"}` once the
//! message is durable; creates the chat if it does not exist.

use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::{Body, error, json};
use crate::auth;
use crate::error::EngineError;
use crate::requests;
use crate::router::{Reply, SendRequest, ShardMessage, ToOwner};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, request: Request<Incoming>, chat: &str) -> Response<Body> {
    match publish(&shard, request, chat).await {
        Ok((chat, number)) => {
            let body = serde_json::json!({ "chat": chat, "number": number }).to_string();
            json(StatusCode::CREATED, Bytes::from(body))
        }
        Err(refused) => error(&refused),
    }
}

async fn publish(
    shard: &Rc<Shard>,
    request: Request<Incoming>,
    chat: &str,
) -> Result<(u64, u64), EngineError> {
    if shard.is_shutting_down() {
        return Err(EngineError::ShuttingDown);
    }
    let token = requests::token_without_query(request.headers(), request.uri())?;
    let app = auth::app_of_token(shard, &token).await?;
    let chat = requests::publish_chat(chat)?;
    let max = shard.config.limits.http_body_bytes_max;
    let bytes = Limited::new(request.into_body(), max)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                EngineError::BodyTooLargeHttp(max)
            } else {
                EngineError::InvalidRequest(format!("reading the body: {error}"))
            }
        })?
        .to_bytes();
    let body = requests::publish_body(chat, &bytes, &shard.config.limits)?;
    let (reply, answer) = flume::bounded(1);
    let request = SendRequest {
        app,
        chat,
        sender: body.from,
        to: body.to,
        body: body.body,
        client_id: body.id,
        as_app: true,
        reply: Reply::Waiter(reply),
    };
    let owner = shard.router.owner_of(app, chat);
    shard
        .router
        .send_to(owner, ShardMessage::Owner(ToOwner::Send(request)))
        .await?;
    let number = answer
        .recv_async()
        .await
        .unwrap_or(Err(EngineError::ShuttingDown))?;
    Ok((chat, number))
}
