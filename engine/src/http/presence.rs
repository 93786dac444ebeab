//! `GET /v1/chats/{n}/presence` with the app token or a member's user
//! token: the chat's members with at least one open connection, on any
//! shard. The owner answers the member set; every shard answers which of
//! them it holds a connection of. Read from the live connections at each
//! ask, never stored: no ghost survives a restart or a crash.

use std::collections::BTreeSet;
use std::rc::Rc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::{Body, error, json};
use crate::auth;
use crate::error::EngineError;
use crate::limits::PRESENCE_LIST_MAX;
use crate::requests;
use crate::router::{OnlineQuery, PresenceRequest, ShardMessage, ToHome, ToOwner};
use crate::shard::Shard;

pub async fn handle(shard: Rc<Shard>, request: Request<Incoming>, chat: &str) -> Response<Body> {
    match presence(&shard, request, chat).await {
        Ok((chat, online)) => {
            let online_count = online.len();
            let has_more = online_count > PRESENCE_LIST_MAX;
            let listed: Vec<&String> = online.iter().take(PRESENCE_LIST_MAX).collect();
            let body = serde_json::json!({
                "chat": chat,
                "online_count": online_count,
                "online": listed,
                "has_more": has_more,
            });
            json(StatusCode::OK, Bytes::from(body.to_string()))
        }
        Err(refused) => error(&refused),
    }
}

async fn presence(
    shard: &Rc<Shard>,
    request: Request<Incoming>,
    chat: &str,
) -> Result<(u64, BTreeSet<String>), EngineError> {
    let token = requests::token_without_query(request.headers(), request.uri())?;
    // A JWT has three dot-separated parts; an app token has none.
    let (app, viewer) = if token.split('.').count() == 3 {
        let identity = auth::verify_user(shard, &token).await?;
        (identity.app, Some(identity.user))
    } else {
        (auth::app_of_token(shard, &token).await?, None)
    };
    let chat = crate::validate::chat_number(chat)?;
    let (reply, answer) = flume::bounded(1);
    let owner = shard.router.owner_of(app, chat);
    let ask = PresenceRequest {
        app,
        chat,
        viewer,
        reply,
    };
    shard
        .router
        .send_to(owner, ShardMessage::Owner(ToOwner::Presence(ask)))
        .await?;
    let members = answer
        .recv_async()
        .await
        .unwrap_or(Err(EngineError::ShuttingDown))?;
    let shards = shard.router.shards();
    let (reply, answers) = flume::bounded(shards);
    shard
        .owner
        .to_every_home(|| {
            ToHome::Online(OnlineQuery {
                app,
                members: std::sync::Arc::clone(&members),
                reply: reply.clone(),
            })
        })
        .await;
    drop(reply);
    let mut online = BTreeSet::new();
    for _ in 0..shards {
        let users = answers
            .recv_async()
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        online.extend(users);
    }
    Ok((chat, online))
}
