//! Signing keys over real HTTP: reuse across restarts, rotation by the timer
//! and at start, and retirement of keys no token can need.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use chat_token::{SigningKey, Verifier};

fn keys_dir(auth: &TestAuth) -> std::path::PathBuf {
    auth.data_dir.join("auth").join("keys")
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_restart_reuses_the_key_when_not_due() {
    let world = World::new().await;
    let auth = world.auth().await;
    let kids = auth.kids().await;
    assert_eq!(kids.len(), 1);
    let kid = &kids[0];
    assert!(kid.starts_with('k'), "{kid}");
    let token = auth.mint_token(&world.app_token, "alice").await;
    let dir = keys_dir(&auth);
    assert_eq!(files(&dir), [format!("{kid}.pem")]);
    let mode = fs::metadata(dir.join(format!("{kid}.pem")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    auth.stop().await;

    let auth = world.auth().await;
    assert_eq!(&auth.kids().await, &kids);
    let jwks = auth.jwks().await;
    assert!(signed_by(&jwks, kid, &token));
    let again = auth.mint_token(&world.app_token, "alice").await;
    assert!(signed_by(&jwks, kid, &again));
    auth.stop().await;
}

#[tokio::test]
async fn keys_rotate_on_the_timer_and_at_start_and_old_tokens_still_verify() {
    let world = World::new().await;
    let rotate_every_second = |c: &mut chat_auth::AuthConfig| c.key_rotation_s = 1;
    let auth = world.auth_with(rotate_every_second).await;
    // With a one-second period the timer may rotate at any second boundary,
    // so every check names the key that actually signed.
    let first = auth.mint_token(&world.app_token, "alice").await;
    let first_kid = signer_kid(&auth.jwks().await, &first);

    // While running: the timer makes a new key once the first is a second old.
    sleep_past(1).await;
    let mut rotated = false;
    for _ in 0..100 {
        if auth.kids().await.last() != Some(&first_kid) {
            rotated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(rotated, "the timer did not rotate");
    let second = auth.mint_token(&world.app_token, "alice").await;
    let second_kid = signer_kid(&auth.jwks().await, &second);
    assert_ne!(second_kid, first_kid);
    let kids_before = auth.kids().await;
    auth.stop().await;

    // At start: the newest key is a second old again, so a new one is made.
    sleep_past(1).await;
    let auth = world.auth_with(rotate_every_second).await;
    let third = auth.mint_token(&world.app_token, "alice").await;
    let jwks = auth.jwks().await;
    let third_kid = signer_kid(&jwks, &third);
    assert!(
        !kids_before.contains(&third_kid),
        "{kids_before:?} {third_kid}"
    );
    // Tokens of the old keys verify with the JWKS served now.
    let verifier = Verifier::from_jwks(&jwks).unwrap();
    for token in [&first, &second, &third] {
        assert_eq!(verify(&verifier, token).sub, "alice");
    }
    // Every key published is on disk, and nothing else.
    let kids: Vec<String> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
    for kid in &kids_before {
        assert!(kids.contains(kid), "{kid} is gone: {kids:?}");
    }
    let mut expected: Vec<String> = kids.iter().map(|k| format!("{k}.pem")).collect();
    expected.sort();
    // The timer may add a key between the two reads: compare with a fresh JWKS.
    let on_disk = files(&keys_dir(&auth));
    let mut published: Vec<String> = auth
        .kids()
        .await
        .iter()
        .map(|k| format!("{k}.pem"))
        .collect();
    published.sort();
    assert!(
        on_disk == expected || on_disk == published,
        "{on_disk:?} {published:?}"
    );
    auth.stop().await;
}

#[tokio::test]
async fn keys_past_their_verify_window_are_removed() {
    let world = World::new().await;
    let dir = world.dir.path().join("auth").join("keys");
    fs::create_dir_all(&dir).unwrap();
    let now = now_s();
    // The ancient key stopped signing when the old one was made, 50,000 s
    // ago: far past every token life (3,600 s). The old key stops signing
    // now, when the service makes a new one (rotation every 1,000 s).
    let ancient = SigningKey::generate(&format!("k{}", now - 100_000)).unwrap();
    let old = SigningKey::generate(&format!("k{}", now - 50_000)).unwrap();
    for key in [&ancient, &old] {
        fs::write(
            dir.join(format!("{}.pem", key.kid())),
            key.to_pkcs8_pem().as_bytes(),
        )
        .unwrap();
    }
    // A key write that a crash interrupted.
    fs::write(dir.join(".k1.pem.tmp"), "half a key").unwrap();
    let old_token = old.mint(world.app, "alice", now, now + 600).unwrap();
    let ancient_token = ancient.mint(world.app, "alice", now, now + 600).unwrap();

    let auth = world
        .auth_with(|c| {
            c.key_rotation_s = 1_000;
            c.token_ttl_max_s = 3_600;
        })
        .await;
    let kids = auth.kids().await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert_eq!(kids[0], old.kid());
    let new_kid = &kids[1];
    assert!(new_kid.as_str() > old.kid(), "{kids:?}");
    let mut expected = vec![format!("{}.pem", old.kid()), format!("{new_kid}.pem")];
    expected.sort();
    assert_eq!(files(&dir), expected);

    let verifier = auth.verifier().await;
    assert!(verifier.verify(&old_token, now_s()).is_ok());
    assert_eq!(
        verifier.verify(&ancient_token, now_s()).unwrap_err(),
        chat_token::TokenError::UnknownKey
    );
    let token = auth.mint_token(&world.app_token, "alice").await;
    assert!(signed_by(&auth.jwks().await, new_kid, &token));
    auth.stop().await;
}
