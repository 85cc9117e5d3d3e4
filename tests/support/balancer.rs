//! A round-robin TCP load balancer on loopback, as users put in front of several instances:
//! each connection goes to the next backend that accepts it (a dead backend is skipped).
//! Backends can be added after it starts, so that instances started on port 0 can be given
//! its URL as their public URL first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

pub struct Balancer {
    pub url: String,
    backends: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    pub async fn start() -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let backends: Arc<Mutex<Vec<String>>> = Arc::default();
        let next = Arc::new(AtomicUsize::new(0));
        let list = backends.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (list, next) = (list.clone(), next.clone());
                tokio::spawn(async move {
                    let all = list.lock().unwrap().clone();
                    for _ in 0..all.len() {
                        let at = &all[next.fetch_add(1, Ordering::Relaxed) % all.len()];
                        if let Ok(mut outbound) = TcpStream::connect(at.as_str()).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer {
            url,
            backends,
            task,
        }
    }

    /// Sends every new connection to `url` (`http://host:port`) alone: a restarted service
    /// behind a proxy that stays put.
    pub fn set(&self, url: &str) {
        *self.backends.lock().unwrap() = vec![url_addr(url)];
    }

    /// Sends connections to `url` (`http://host:port`) too.
    pub fn add(&self, url: &str) {
        self.backends.lock().unwrap().push(url_addr(url));
    }
}

fn url_addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
