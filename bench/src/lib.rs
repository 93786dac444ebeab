//! Fixtures shared by the criterion suites: a migrated embedded store with one
//! app and chat, and batches of messages of a chosen size.

use chat_persistence::store::{AppId, ChatNumber, EmbeddedStore, Store};
use chat_wire::{Batch, NewMessage};

/// The allocator the shipped binaries use (`chat`, `loadgen`), so the
/// suites measure what runs: every bench links this crate. (With glibc's
/// allocator, malloc and free were ~15% of the store commit bench's
/// samples.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A store in `dir` holding one app with one chat, ready for messages.
pub async fn store_with_chat(dir: &std::path::Path) -> (EmbeddedStore, AppId, ChatNumber) {
    let store = EmbeddedStore::open(dir).expect("open store");
    store.migrate().await.expect("migrate");
    let app = store
        .create_app("bench".into(), [7; 32], 0)
        .await
        .expect("app");
    let chat = store.create_chat(app.id, None, 0).await.expect("chat");
    (store, app.id, chat.number)
}

/// `count` messages numbered from `first`, each with a body of `body_bytes` bytes.
pub fn batch(app: AppId, chat: ChatNumber, first: u64, count: u64, body_bytes: usize) -> Batch {
    let body = "x".repeat(body_bytes);
    let messages = (first..first + count)
        .map(|number| NewMessage {
            app,
            chat,
            number,
            sender: "bench-user".into(),
            recipients: None,
            body: body.clone(),
            client_id: None,
            sent_at_us: number as i64,
            as_app: true,
        })
        .collect();
    Batch {
        batch_id: first,
        chats: vec![],
        messages,
    }
}
