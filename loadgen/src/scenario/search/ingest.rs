//! Ingest straight into the persistence API: batches of the corpus's
//! messages posted to `POST /internal/v1/batches` (the engine's own write
//! path, with the operator key), so the API commits and indexes at a rate
//! the load generator's one core can drive; WebSocket or HTTP publishing
//! through the engine would cost the shared cores more than the indexing
//! being measured.
//!
//! Messages are numbered here, as an owner shard numbers them. Each lane
//! (one batch in flight) owns the chats whose index is congruent to it, so
//! no chat's messages are ever in two batches in flight and the store
//! never sees a gap.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chat_wire::{Batch, NewMessage, encode_batch, limits::MESSAGE_BODY_BYTES_MAX};
use serde::Deserialize;

use super::corpus;
use crate::stats;

/// Attempts of one batch on connection errors and 5xx answers (a replay is
/// a no-op with the same answer).
const BATCH_ATTEMPTS: u32 = 5;
/// Interval of the paced ingest's ticks.
pub const TICK: Duration = Duration::from_millis(10);

#[derive(Deserialize)]
struct Committed {
    refused: Vec<serde_json::Value>,
}

/// A message the caller wants to hear about once its batch is durable.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub probe: u64,
    pub chat: u64,
    pub number: u64,
    /// When its batch was acknowledged.
    pub acked: Instant,
}

pub struct Ingest {
    http: reqwest::Client,
    url: String,
    operator_key: String,
    app: u64,
    chats: Vec<u64>,
    /// The last number given in each chat (index as in `chats`).
    last_numbers: Vec<Cell<u64>>,
    body_bytes: usize,
    lanes: usize,
    /// Each lane's next chat, as an index into its own chats.
    lane_cursors: Vec<Cell<usize>>,
    next_batch_id: Cell<u64>,
    pub acked_messages: Cell<u64>,
    /// The API's answer time of each batch, in microseconds.
    pub commit_us: RefCell<hdrhistogram::Histogram<u64>>,
}

impl Ingest {
    pub fn new(
        http: reqwest::Client,
        api_url: String,
        operator_key: String,
        app: u64,
        chats: Vec<u64>,
        body_bytes: usize,
        lanes: usize,
    ) -> Self {
        assert!(
            lanes >= 1 && lanes <= chats.len(),
            "1 to {} lanes",
            chats.len()
        );
        Self {
            http,
            url: format!("{api_url}/internal/v1/batches"),
            operator_key,
            app,
            last_numbers: chats.iter().map(|_| Cell::new(0)).collect(),
            chats,
            body_bytes,
            lanes,
            lane_cursors: (0..lanes).map(|_| Cell::new(0)).collect(),
            next_batch_id: Cell::new(1),
            acked_messages: Cell::new(0),
            commit_us: RefCell::new(stats::histogram()),
        }
    }

    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// The last number of each chat so far (what the store holds once
    /// every batch is answered).
    pub fn last_number(&self, chat_index: usize) -> u64 {
        self.last_numbers[chat_index].get()
    }

    /// How many chats lane `lane` owns (those whose index is congruent to it).
    pub fn lane_chats(&self, lane: usize) -> usize {
        (self.chats.len() - lane).div_ceil(self.lanes)
    }

    /// Posts one batch of `messages` messages of lane `lane`; the first
    /// carries `probe`'s word when given. Returns that message's place.
    pub async fn send(
        &self,
        lane: usize,
        messages: usize,
        probe: Option<u64>,
    ) -> anyhow::Result<Option<Probe>> {
        let batch = self.next_batch(lane, messages, probe);
        let probed = probe.map(|probe| (probe, batch.messages[0].chat, batch.messages[0].number));
        let bytes = encode_batch(&batch, MESSAGE_BODY_BYTES_MAX).context("encoding a batch")?;
        let sent = Instant::now();
        self.post(&bytes).await?;
        let acked = Instant::now();
        let _ = self.commit_us.borrow_mut().record(
            (acked - sent)
                .as_micros()
                .clamp(1, stats::LATENCY_MAX_US as u128) as u64,
        );
        self.acked_messages
            .set(self.acked_messages.get() + batch.messages.len() as u64);
        Ok(probed.map(|(probe, chat, number)| Probe {
            probe,
            chat,
            number,
            acked,
        }))
    }

    fn next_batch(&self, lane: usize, messages: usize, probe: Option<u64>) -> Batch {
        assert!(lane < self.lanes && messages >= 1);
        let sent_at_us = stats::now_us() as i64;
        let lane_chats = self.lane_chats(lane);
        let cursor = &self.lane_cursors[lane];
        let mut batch = Batch {
            batch_id: self.next_batch_id.replace(self.next_batch_id.get() + 1),
            chats: Vec::new(),
            messages: Vec::with_capacity(messages),
        };
        for i in 0..messages {
            let index = lane + cursor.get() * self.lanes;
            cursor.set((cursor.get() + 1) % lane_chats);
            let chat = self.chats[index];
            let number = self.last_numbers[index].get() + 1;
            self.last_numbers[index].set(number);
            let body = match probe {
                Some(probe) if i == 0 => {
                    let word = corpus::probe_word(probe);
                    let rest = corpus::body(chat, number, self.body_bytes - word.len() - 1);
                    format!("{word} {rest}")
                }
                _ => corpus::body(chat, number, self.body_bytes),
            };
            batch.messages.push(NewMessage {
                app: self.app,
                chat,
                number,
                sender: format!("user{}", number % 50),
                recipients: None,
                body,
                client_id: None,
                sent_at_us,
                as_app: true,
            });
        }
        batch
    }

    async fn post(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut last = String::new();
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let response = self
                .http
                .post(&self.url)
                .bearer_auth(&self.operator_key)
                .header("content-type", "application/octet-stream")
                .body(bytes.to_vec())
                .send()
                .await;
            let response = match response {
                Ok(response) => response,
                Err(error) => {
                    last = format!("request: {error}");
                    continue;
                }
            };
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.is_server_error() {
                last = format!("{status}: {text}");
                continue;
            }
            if status.as_u16() != 200 {
                bail!("a batch was refused: {status}: {text}");
            }
            let committed: Committed =
                serde_json::from_str(&text).context("reading a batch's answer")?;
            if !committed.refused.is_empty() {
                bail!(
                    "the store refused chats of a batch: {:?}",
                    committed.refused
                );
            }
            return Ok(());
        }
        bail!("a batch failed {BATCH_ATTEMPTS} times, the last: {last}")
    }
}
