//! User tokens' signatures checked by one task per shard, in slices.
//!
//! An Ed25519 check costs about 60 µs of a core. In a reconnect storm
//! hundreds of handshakes become runnable in one scheduler pass, and each
//! checked its token in its own task: under `loadgen reconnect --clients
//! 1000` that held a shard for 17 ms of CPU in one go, the signature checks
//! half of it (`perf record` of the stall's window). Here a handshake
//! queues its check and waits, not runnable, while one task checks the
//! queue in order and ends the pass every slice (`task::Slice`): the
//! shard's timers, API answers and other shards' messages wait one slice
//! at most, and the storm's checks cost what they cost, no more.

use std::sync::Arc;
use std::time::Duration;

use chat_token::{Claims, TokenError, Verifier};

struct Check {
    verifier: Arc<Verifier>,
    token: String,
    now_s: i64,
    reply: flume::Sender<Result<Claims, TokenError>>,
}

/// The shard's queue of token checks (see the module docs).
pub struct TokenChecks {
    queue: flume::Sender<Check>,
}

impl TokenChecks {
    /// Starts the shard's checking task, which ends its pass every `slice`.
    pub fn start(slice: Duration) -> Self {
        let (queue, checks) = flume::unbounded();
        crate::task::spawn(run(checks, slice));
        Self { queue }
    }

    /// `verifier.verify(token, now_s)`, in its turn.
    pub async fn verify(
        &self,
        verifier: Arc<Verifier>,
        token: &str,
        now_s: i64,
    ) -> Result<Claims, TokenError> {
        let (reply, answer) = flume::bounded(1);
        let check = Check {
            verifier: Arc::clone(&verifier),
            token: token.to_string(),
            now_s,
            reply,
        };
        // The task ends only with the shard; should it have, check here.
        if self.queue.send(check).is_err() {
            return verifier.verify(token, now_s);
        }
        match answer.recv_async().await {
            Ok(verified) => verified,
            Err(_) => verifier.verify(token, now_s),
        }
    }
}

async fn run(checks: flume::Receiver<Check>, slice: Duration) {
    while let Ok(first) = checks.recv_async().await {
        let mut slice = crate::task::Slice::new(slice);
        let mut next = Some(first);
        while let Some(check) = next {
            // A handshake that gave up meanwhile dropped its receiver.
            if !check.reply.is_disconnected() {
                let verified = check.verifier.verify(&check.token, check.now_s);
                let _ = check.reply.send(verified);
            }
            slice.step().await;
            next = checks.try_recv().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use super::TokenChecks;

    /// 300 handshakes' checks queued in one pass (a reconnect storm): the
    /// answers are the verifier's own, and a timer due meanwhile is late by
    /// about one slice, not by the whole storm (300 checks of ~60 µs).
    #[test]
    fn a_storm_of_checks_holds_a_timer_for_one_slice() {
        let key = chat_token::SigningKey::generate("k1").unwrap();
        let verifier = std::sync::Arc::new(chat_token::Verifier::new([key.public()]).unwrap());
        let now_s = crate::auth::now_s();
        let good = key.mint(7, "alice", now_s, now_s + 600).unwrap();
        let executor = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("an executor");
        let (answers, timer_late, storm) = executor.run(async move {
            let checks = Rc::new(TokenChecks::start(Duration::from_micros(250)));
            let timer = crate::task::spawn_timer_lateness(Duration::from_millis(1));
            let started = Instant::now();
            let handshakes: Vec<_> = (0..300)
                .map(|i| {
                    let checks = Rc::clone(&checks);
                    let verifier = std::sync::Arc::clone(&verifier);
                    let token = if i % 3 == 0 {
                        "not.a.token".to_string()
                    } else {
                        good.clone()
                    };
                    glommio::spawn_local(async move {
                        checks.verify(verifier, &token, now_s).await.is_ok()
                    })
                })
                .collect();
            let mut answers = Vec::new();
            for handshake in handshakes {
                answers.push(handshake.await);
            }
            let timer_late = timer.await;
            (answers, timer_late, started.elapsed())
        });
        for (i, ok) in answers.iter().enumerate() {
            assert_eq!(*ok, i % 3 != 0, "check {i}");
        }
        assert!(
            storm > Duration::from_millis(5),
            "the storm is long enough to show a held timer: {storm:?}"
        );
        assert!(
            timer_late < Duration::from_millis(3),
            "the timer was {timer_late:?} late behind a storm of {storm:?}"
        );
    }
}
