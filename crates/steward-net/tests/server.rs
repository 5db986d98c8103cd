//! The shared server loop against real connections on 127.0.0.1: bodies over the limit,
//! and a shutdown that lets the request in flight finish and then refuses new ones.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, StatusCode};
use std::time::Duration;
use steward_net::{json_reply, read_body, serve, Reply, ServerOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

async fn handler(req: Request<Incoming>) -> Reply {
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return json_reply(StatusCode::OK, &serde_json::json!({ "slow": true }));
    }
    match read_body(
        req.into_body(),
        1024,
        Instant::now() + Duration::from_secs(5),
    )
    .await
    {
        Ok(b) => json_reply(StatusCode::OK, &serde_json::json!({ "len": b.len() })),
        Err(e) => json_reply(e.status(), &serde_json::json!({ "error": e.to_string() })),
    }
}

async fn start() -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = watch::channel(false);
    let options = ServerOptions {
        drain: Duration::from_secs(5),
        ..ServerOptions::default()
    };
    let task = tokio::spawn(serve(listener, options, rx, handler));
    (url, tx, task)
}

async fn post(url: &str, body: Vec<u8>) -> Result<(StatusCode, String), String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = client
        .request(
            Request::post(url)
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    let (url, _stop, _task) = start().await;
    let (status, text) = post(&format!("{url}/echo"), vec![b'x'; 1024])
        .await
        .unwrap();
    assert_eq!((status, text.as_str()), (StatusCode::OK, "{\"len\":1024}"));
    let (status, text) = post(&format!("{url}/echo"), vec![b'x'; 1025])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(
        text.contains("larger than the limit (1024 bytes)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_request_in_flight_then_refuses_new_connections() {
    let (url, stop, task) = start().await;
    let slow = tokio::spawn({
        let url = url.clone();
        async move { post(&format!("{url}/slow"), Vec::new()).await }
    });
    // Let the slow request reach the handler, then stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).unwrap();
    let (status, text) = slow
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!((status, text.as_str()), (StatusCode::OK, "{\"slow\":true}"));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server ends once drained")
        .unwrap();
    assert!(
        post(&format!("{url}/echo"), Vec::new()).await.is_err(),
        "the listener is closed"
    );
}
