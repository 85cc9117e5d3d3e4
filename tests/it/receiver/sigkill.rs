//! A SIGKILL of the real binary under load: every notification answered 202 is in the store
//! after a restart.

use super::*;

/// The real binary on a port of its own choosing; answers it with its base URL, read from its
/// ready log line (no free port picked, dropped and bound again).
fn relay365(dir: &std::path::Path, db_url: &str) -> (Child, support::child::Logs) {
    let mut c = support::child::serve(dir, db_url);
    let mut child = c.spawn().unwrap();
    let logs = support::child::wait_ready(&mut child);
    (child, logs)
}

async fn wait_ready(base: &str) {
    for _ in 0..500 {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the service did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_202_survives_a_sigkill() {
    on_every_store!(|db| {
        let store = db.store().await;
        let sub = seed(&store).await;
        let dir = tempfile::tempdir().unwrap();
        let (mut child, logs) = relay365(dir.path(), &db.url);
        let base = logs.url.clone();
        wait_ready(&base).await;

        let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
        let http = reqwest::Client::new();
        let senders: Vec<_> = (0..8)
            .map(|t| {
                let (http, base, sub, accepted) =
                    (http.clone(), base.clone(), sub.clone(), accepted.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let id = format!("m-{t}-{i}");
                        let Ok(r) = http
                            .post(format!("{base}/api/ms365/webhook"))
                            .json(&change(&sub, &id))
                            .send()
                            .await
                        else {
                            break;
                        };
                        if r.status() == 202 {
                            accepted.lock().unwrap().push(id);
                        }
                    }
                })
            })
            .collect();
        let acc = accepted.clone();
        assert!(
            eventually(20, || {
                let acc = acc.clone();
                async move { acc.lock().unwrap().len() >= 300 }
            })
            .await,
            "{}: notifications were accepted",
            db.label
        );
        child.kill().unwrap(); // SIGKILL, requests in flight
        child.wait().unwrap();
        for s in senders {
            s.await.unwrap();
        }
        let accepted = accepted.lock().unwrap().clone();

        let (mut again, logs) = relay365(dir.path(), &db.url);
        let base = logs.url.clone();
        wait_ready(&base).await;
        let stored: HashSet<String> = all_events(&store)
            .await
            .into_iter()
            .filter_map(|e| e.resource_id)
            .collect();
        let lost: Vec<&String> = accepted.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "{}: lost {} of {} accepted: {lost:?}",
            db.label,
            lost.len(),
            accepted.len()
        );
        // And the restarted service shows them.
        let (code, page) = {
            let r = reqwest::get(format!("{base}/api/events?limit=500"))
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        };
        assert_eq!(code, 200);
        assert!(!page["events"].as_array().unwrap().is_empty());
        again.kill().unwrap();
        again.wait().unwrap();
        store.close().await;
        db.cleanup().await;
    });
}
