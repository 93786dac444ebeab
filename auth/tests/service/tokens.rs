//! Minting over real HTTP: tokens verify with the published keys, and every
//! bad request gets its documented code.

use std::time::{Duration, UNIX_EPOCH};

use crate::common::*;
use chat_auth::limits::TOKEN_TTL_MAX_S;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_minted_token_verifies_with_the_published_keys() {
    let world = World::new().await;
    let auth = world.auth().await;
    let verifier = auth.verifier().await;

    let before = now_s();
    let body = auth
        .mint(&world.app_token, "alice@example.com", Some(120))
        .await;
    let token = body["token"].as_str().unwrap();
    let claims = verify(&verifier, token);
    assert_eq!(claims.app, world.app);
    assert_eq!(claims.sub, "alice@example.com");
    assert_eq!(claims.exp, claims.iat + 120);
    assert!((before..=now_s()).contains(&claims.iat), "{claims:?}");
    let expires_at = humantime::parse_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires_at,
        UNIX_EPOCH + Duration::from_secs(claims.exp as u64)
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");

    // The default life, and the longest allowed.
    let token = auth.mint_token(&world.app_token, "bob").await;
    let claims = verify(&verifier, &token);
    assert_eq!(claims.exp - claims.iat, 3_600);
    let body = auth
        .mint(&world.app_token, "bob", Some(TOKEN_TTL_MAX_S))
        .await;
    let claims = verify(&verifier, body["token"].as_str().unwrap());
    assert_eq!(claims.exp - claims.iat, TOKEN_TTL_MAX_S as i64);

    // Another app's tokens carry its own id.
    let (other_token, other_app) = world.api.create_app("Other").await;
    let token = auth.mint_token(&other_token, "alice@example.com").await;
    assert_eq!(verify(&verifier, &token).app, other_app);
    assert_ne!(other_app, world.app);

    auth.stop().await;
}

#[tokio::test]
async fn credentials_are_checked_by_kind() {
    let world = World::new().await;
    let auth = world.auth().await;
    let body = json!({ "user": "alice" });
    for path in ["/v1/tokens", "/v1/tokens/revoke"] {
        let call =
            |token: Option<&'static str>| auth.call(Method::POST, path, token, Some(body.clone()));
        assert_error(
            &call(None).await,
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
        );
        assert_error(
            &call(Some("app_not_a_real_token")).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        );
        assert_error(
            &call(Some(OPERATOR_KEY)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
        // Not a bearer credential at all.
        let response = auth
            .client
            .post(format!("{}{path}", auth.base))
            .header("Authorization", "Basic YWxpY2U6c2VjcmV0")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // A user token is not an app token.
        let user_token = auth.mint_token(&world.app_token, "alice").await;
        assert_error(
            &auth
                .call(Method::POST, path, Some(&user_token), Some(body.clone()))
                .await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        );
    }

    let internal = "/internal/v1/revocations";
    assert_error(
        &auth.call(Method::GET, internal, None, None).await,
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
    );
    assert_error(
        &auth
            .call(Method::GET, internal, Some("op_wrong"), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    assert_error(
        &auth
            .call(Method::GET, internal, Some(&world.app_token), None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, body) = auth
        .call(Method::GET, internal, Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "revocations": [], "last_seq": 0, "has_more": false })
    );

    // The keys are public.
    let (status, body) = auth.call(Method::GET, "/v1/keys", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["keys"][0]["alg"], "EdDSA");
    auth.stop().await;
}

#[tokio::test]
async fn bad_requests_get_their_codes() {
    let world = World::new().await;
    let auth = world
        .auth_with(|c| {
            c.token_ttl_max_s = 600;
            c.token_ttl_default_s = 60;
        })
        .await;
    let token = Some(world.app_token.as_str());
    let mint = |body: serde_json::Value| auth.call(Method::POST, "/v1/tokens", token, Some(body));

    for user in [json!(""), json!("a b"), json!("ä"), json!("a".repeat(129))] {
        assert_error(
            &mint(json!({ "user": user })).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_user_id",
        );
    }
    for ttl in [
        json!(0),
        json!(601),
        json!(-1),
        json!(1.5),
        json!(1e30),
        json!(u64::MAX),
    ] {
        assert_error(
            &mint(json!({ "user": "alice", "ttl_s": ttl })).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ttl",
        );
    }
    let (status, _) = mint(json!({ "user": "alice", "ttl_s": 600 })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = mint(json!({ "user": "alice", "ttl_s": null })).await;
    assert_eq!(status, StatusCode::CREATED);

    for (body, code) in [
        (json!({ "user": "alice", "admin": true }), "unknown_field"),
        (json!({ "user": 7 }), "invalid_request"),
        (json!({ "user": "alice", "ttl_s": "60" }), "invalid_request"),
        (json!({}), "invalid_request"),
        (json!(["alice"]), "invalid_request"),
    ] {
        assert_error(&mint(body).await, StatusCode::BAD_REQUEST, code);
    }
    for raw in [&b""[..], b"{\"user\":", b"not json", b"\xff\xfe"] {
        for path in ["/v1/tokens", "/v1/tokens/revoke"] {
            assert_error(
                &auth
                    .call_raw(Method::POST, path, token, Some(raw.to_vec()))
                    .await,
                StatusCode::BAD_REQUEST,
                "malformed_json",
            );
        }
    }
    assert_error(
        &auth
            .call(
                Method::POST,
                "/v1/tokens/revoke",
                token,
                Some(json!({ "user": "alice", "ttl_s": 5 })),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    );
    assert_error(
        &auth
            .call(
                Method::POST,
                "/v1/tokens/revoke",
                token,
                Some(json!({ "user": "a/b" })),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_user_id",
    );
    let huge = json!({ "user": "x".repeat(20_000) });
    assert_error(
        &mint(huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );

    let op = Some(OPERATOR_KEY);
    for (query, code) in [
        ("after=x", "invalid_number"),
        ("after=-1", "invalid_number"),
        ("after=%2B1", "invalid_number"),
        ("after=", "invalid_number"),
        ("after=1&after=2", "invalid_query"),
        ("limit=5", "invalid_query"),
    ] {
        let path = format!("/internal/v1/revocations?{query}");
        assert_error(
            &auth.call(Method::GET, &path, op, None).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }

    // Routes that read no query parameter refuse any (they used to ignore them).
    for (method, path) in [
        (Method::POST, "/v1/tokens?admin=1"),
        (Method::POST, "/v1/tokens/revoke?user=bob"),
        (Method::GET, "/v1/keys?kid=x"),
        (Method::GET, "/healthz?x"),
    ] {
        assert_error(
            &auth
                .call(method, path, token, Some(json!({ "user": "alice" })))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        );
    }

    assert_error(
        &auth.call(Method::GET, "/v1/nope", None, None).await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    );
    assert_error(
        &auth.call(Method::GET, "/v1/tokens", token, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &auth.call(Method::DELETE, "/v1/keys", None, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    auth.stop().await;
}

#[tokio::test]
async fn app_tokens_are_cached_and_an_unreachable_api_is_unavailable() {
    let world = World::new().await;
    let auth = world.auth().await;
    auth.mint_token(&world.app_token, "alice").await;
    let World { api, app_token, .. } = world;
    api.stop().await;
    // Cached: minting goes on while the API is down.
    auth.mint_token(&app_token, "alice").await;
    // Unknown: the API must be asked, and cannot be.
    assert_error(
        &auth
            .call(
                Method::POST,
                "/v1/tokens",
                Some("app_never_seen"),
                Some(json!({ "user": "alice" })),
            )
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    auth.stop().await;
}

#[tokio::test]
async fn health_and_metrics() {
    let world = World::new().await;
    let auth = world.auth().await;
    let (status, body) = auth.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, Some("ok\n")));
    auth.mint_token(&world.app_token, "alice").await;
    auth.revoke(&world.app_token, "alice").await;
    let (status, body) = auth.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    for line in [
        "chat_auth_tokens_minted_total 1",
        "chat_auth_revocations_total 1",
        "chat_auth_key_rotations_total 1",
        "chat_auth_verifying_keys 1",
        "chat_auth_live_revocations 1",
        r#"chat_auth_requests_total{method="POST",route="/v1/tokens",status="201"} 1"#,
        r#"chat_auth_app_token_lookups_total{outcome="valid"} 1"#,
        r#"chat_auth_app_token_lookups_total{outcome="cached"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    auth.stop().await;
}
