//! A TCP proxy in front of the shared OpenSearch node that one test can
//! take down and bring back: OpenSearch "stops" for that test's API only,
//! so the other tests, running at the same time against the same node,
//! are not disturbed (a SIGSTOP of the node would stall them all).
//!
//! Down, the proxy cuts every open connection and stalls new ones (accepts
//! them and never answers), which is what a stopped or partitioned node
//! looks like to a client: connections hang until its timeout. Up, it
//! forwards bytes both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// Bumped on every take-down: connections opened before it end.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let target = target.to_owned();
        let task = {
            let down = Arc::clone(&down);
            let generation = generation.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut cut = generation.subscribe();
                    if down.load(Ordering::Acquire) {
                        // Stalled: held until the proxy comes back up, then dropped.
                        tokio::spawn(async move {
                            let _ = cut.changed().await;
                            drop(client);
                        });
                        continue;
                    }
                    let target = target.clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&target).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            down,
            generation,
            task,
        }
    }

    /// OpenSearch stops answering: open connections are cut, new ones hang.
    pub fn take_down(&self) {
        self.down.store(true, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }

    /// OpenSearch answers again (stalled connections are dropped).
    pub fn bring_up(&self) {
        self.down.store(false, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
