//! Revocation over real HTTP: what the engine and the persistence API learn
//! by polling the internal route, the same-second rule, and durability
//! across a restart.

use crate::common::*;
use chat_auth::{RevocationList, RevokedUser};

#[tokio::test]
async fn tokens_minted_before_a_revocation_are_revoked_and_after_are_not() {
    let world = World::new().await;
    let (other_app_token, other_app) = world.api.create_app("Other").await;
    let auth = world.auth().await;
    let verifier = auth.verifier().await;
    let app = world.app;

    let before = auth.mint_token(&world.app_token, "alice").await;
    let bob = auth.mint_token(&world.app_token, "bob").await;
    let other = auth.mint_token(&other_app_token, "alice").await;
    let answer: RevokedUser =
        serde_json::from_value(auth.revoke(&world.app_token, "alice").await).unwrap();
    // Usually within the same second as `before` and the revocation: the
    // rule makes the outcome the same either way.
    let after = auth.mint_token(&world.app_token, "alice").await;
    assert_eq!(answer.user, "alice");

    let mut list = RevocationList::new();
    auth.poll(&mut list).await;
    assert_eq!(list.len(), 1);
    let revoked_at = list.revoked_at(app, "alice").unwrap();
    let shown = humantime::parse_rfc3339(&answer.revoked_at).unwrap();
    assert_eq!(
        shown
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        revoked_at
    );

    let before = verify(&verifier, &before);
    let after = verify(&verifier, &after);
    assert!(
        list.is_revoked(app, "alice", before.iat),
        "{before:?} {revoked_at}"
    );
    assert!(
        !list.is_revoked(app, "alice", after.iat),
        "{after:?} {revoked_at}"
    );
    // A token minted after the revocation is issued at or after revoked_at
    // (its mint waited for that second), never ahead of the clock.
    assert!(after.iat >= revoked_at);
    assert!(after.iat <= now_s());
    assert_eq!(after.exp - after.iat, 3_600);
    // Another user, and the same user of another app, are untouched.
    assert!(!list.is_revoked(app, "bob", verify(&verifier, &bob).iat));
    let other = verify(&verifier, &other);
    assert_eq!(other.app, other_app);
    assert!(!list.is_revoked(other_app, "alice", other.iat));

    // Revoking again, in the same second or not, moves the line past the
    // token minted in between.
    auth.revoke(&world.app_token, "alice").await;
    let third = verify(&verifier, &auth.mint_token(&world.app_token, "alice").await);
    auth.poll(&mut list).await;
    assert_eq!(list.after(), 2);
    assert!(list.is_revoked(app, "alice", after.iat));
    assert!(!list.is_revoked(app, "alice", third.iat));
    auth.stop().await;
}

#[tokio::test]
async fn the_log_pages_by_seq() {
    let world = World::new().await;
    let auth = world.auth().await;
    for user in ["a", "b", "c"] {
        auth.revoke(&world.app_token, user).await;
    }
    let page = auth.revocations(0).await;
    let seqs: Vec<u64> = page.revocations.iter().map(|r| r.seq).collect();
    let users: Vec<&str> = page.revocations.iter().map(|r| r.user.as_str()).collect();
    assert_eq!((seqs, users), (vec![1, 2, 3], vec!["a", "b", "c"]));
    assert!(page.revocations.iter().all(|r| r.app == world.app));
    assert_eq!((page.last_seq, page.has_more), (3, false));
    let page = auth.revocations(2).await;
    assert_eq!(page.revocations.len(), 1);
    assert_eq!(page.revocations[0].user, "c");
    let page = auth.revocations(3).await;
    assert_eq!((page.revocations.len(), page.last_seq), (0, 3));
    auth.stop().await;
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let world = World::new().await;
    let auth = world.auth().await;
    let before = auth.mint_token(&world.app_token, "alice").await;
    auth.revoke(&world.app_token, "alice").await;
    auth.revoke(&world.app_token, "bob").await;
    let before_restart = auth.revocations(0).await;
    auth.stop().await;

    let auth = world.auth().await;
    let page = auth.revocations(0).await;
    assert_eq!(page, before_restart);
    let mut list = RevocationList::new();
    auth.poll(&mut list).await;
    let verifier = auth.verifier().await;
    let before = verify(&verifier, &before);
    assert!(list.is_revoked(world.app, "alice", before.iat));
    // Minting after the restart still honours the revocation's line.
    let after = verify(&verifier, &auth.mint_token(&world.app_token, "alice").await);
    assert!(!list.is_revoked(world.app, "alice", after.iat));
    // And the sequence goes on where it was.
    auth.revoke(&world.app_token, "carol").await;
    let page = auth.revocations(2).await;
    assert_eq!(page.revocations[0].seq, 3);
    assert_eq!(page.revocations[0].user, "carol");
    auth.stop().await;
}

/// `POST /v1/tokens/revoke` whatever it answers: (status, body).
async fn revoke_raw(
    auth: &TestAuth,
    token: &str,
    user: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    auth.call(
        reqwest::Method::POST,
        "/v1/tokens/revoke",
        Some(token),
        Some(serde_json::json!({ "user": user })),
    )
    .await
}

#[tokio::test]
async fn revocations_per_app_are_capped_per_minute() {
    use reqwest::StatusCode;
    let world = World::new().await;
    let (other_app_token, _) = world.api.create_app("Other").await;
    let auth = world
        .auth_with(|config| config.revocations_per_minute_max = 3)
        .await;
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            revoke_raw(&auth, &world.app_token, user).await.0,
            StatusCode::OK
        );
    }
    // The fourth within the minute is refused and recorded nowhere.
    let refused = revoke_raw(&auth, &world.app_token, "u4").await;
    assert_error(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_revocations",
    );
    let mut list = RevocationList::new();
    auth.poll(&mut list).await;
    assert_eq!(list.len(), 3);
    assert_eq!(list.revoked_at(world.app, "u4"), None);
    // The quota is per app: another app still revokes.
    assert_eq!(
        revoke_raw(&auth, &other_app_token, "u1").await.0,
        StatusCode::OK
    );
}
