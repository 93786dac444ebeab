//! Striped in-process locks. Correctness across processes comes from the
//! lightweight transactions; these only keep the requests of one process
//! from contending with each other over Paxos, which would cost retries.

use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

pub struct Stripes {
    locks: Vec<Mutex<()>>,
}

impl Stripes {
    pub fn new(stripes: usize) -> Self {
        Self {
            locks: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, key: impl Hash) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = (hasher.finish() % self.locks.len() as u64) as usize;
        self.locks[index].lock().await
    }
}
