//! LISTEN/NOTIFY as a hint that a queue has new work. One connection of its own, made
//! again with backoff when it drops; after every (re)connect it wakes everyone ("*"), so
//! whatever was enqueued while it was away is seen. Callers poll anyway.

use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

pub const CHANNEL: &str = "steward_jobs";

/// Listens until the returned task is aborted (when the store is dropped).
pub fn spawn(
    cfg: tokio_postgres::Config,
    wake: broadcast::Sender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            if let Ok((client, mut conn)) = cfg.connect(tokio_postgres::NoTls).await {
                let wake2 = wake.clone();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    use futures_util::StreamExt;
                    while let Some(Ok(msg)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = msg {
                            let _ = wake2.send(n.payload().to_string());
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    delay = Duration::from_millis(200);
                    let _ = wake.send("*".into());
                }
                let _ = driver.await;
                drop(client);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    })
}
