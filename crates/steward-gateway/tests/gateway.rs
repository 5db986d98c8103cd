//! The gateway against real HTTP servers on 127.0.0.1: mock backends (small hyper servers)
//! that answer, stream, hang, fail or die on command.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Hang,
    Fail500,
    /// Two SSE chunks 300 ms apart, then [DONE].
    Stream,
    /// One SSE chunk, then the connection drops.
    DieMidStream,
    /// An SSE stream of `: ping` comments every 50 ms and never a data event.
    PingOnly,
    /// Answers like `Ok`, after 300 ms.
    Slow,
    /// 200 with an HTML page instead of JSON (a proxy's error page, say).
    NotJson,
    /// 429 with `Retry-After: 30` on completions; /health is fine.
    TooMany,
    /// /health answers 503 (a model still loading); completions would work.
    Loading,
    /// No /health endpoint (404); completions work.
    NoHealth,
}

/// A mock backend; returns its URL. It stops when the runtime does.
async fn backend(mode: Mode, name: &'static str) -> String {
    counted_backend(mode, name).await.0
}

/// A mock backend and the count of completion requests it has received (probes of
/// `/health` are not counted).
async fn counted_backend(mode: Mode, name: &'static str) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        if req.uri().path() != "/health" {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        let health = req.uri().path() == "/health";
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        match mode {
                            Mode::TooMany if !health => Ok(Response::builder()
                                .status(429)
                                .header("retry-after", "30")
                                .body(http_body_util::Either::Left(Full::new(Bytes::from(
                                    "{\"error\":\"slow down\"}",
                                ))))
                                .unwrap()),
                            Mode::NoHealth if health => Ok(Response::builder()
                                .status(404)
                                .body(http_body_util::Either::Left(Full::new(Bytes::from(
                                    "not found",
                                ))))
                                .unwrap()),
                            Mode::Loading if health => Ok(Response::builder()
                                .status(503)
                                .body(http_body_util::Either::Left(Full::new(Bytes::from(
                                    "loading",
                                ))))
                                .unwrap()),
                            Mode::NotJson => Ok(Response::new(http_body_util::Either::Left(
                                Full::new(Bytes::from("<html>502 Bad Gateway</html>")),
                            ))),
                            Mode::Slow => {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                let out = serde_json::json!({ "backend": name });
                                Ok(Response::new(http_body_util::Either::Left(Full::new(
                                    Bytes::from(out.to_string()),
                                ))))
                            }
                            Mode::PingOnly => {
                                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                                tokio::spawn(async move {
                                    while tx
                                        .send(Ok(Frame::data(Bytes::from(": ping\n\n"))))
                                        .await
                                        .is_ok()
                                    {
                                        tokio::time::sleep(Duration::from_millis(50)).await;
                                    }
                                });
                                let mut r = Response::new(http_body_util::Either::Right(
                                    ReceiverStream(rx),
                                ));
                                r.headers_mut()
                                    .insert("content-type", "text/event-stream".parse().unwrap());
                                Ok(r)
                            }
                            Mode::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                unreachable!()
                            }
                            Mode::Fail500 => Ok::<_, Infallible>(
                                Response::builder()
                                    .status(500)
                                    .body(http_body_util::Either::Left(Full::new(Bytes::from(
                                        "boom",
                                    ))))
                                    .unwrap(),
                            ),
                            Mode::Ok | Mode::TooMany | Mode::Loading | Mode::NoHealth => {
                                let out =
                                    serde_json::json!({ "backend": name, "model": v["model"] });
                                Ok(Response::new(http_body_util::Either::Left(Full::new(
                                    Bytes::from(out.to_string()),
                                ))))
                            }
                            Mode::Stream | Mode::DieMidStream => {
                                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                                tokio::spawn(async move {
                                    let _ = tx
                                        .send(Ok(Frame::data(Bytes::from(format!(
                                            "data: {{\"t\":{}}}\n\n",
                                            now_ms()
                                        )))))
                                        .await;
                                    if mode == Mode::DieMidStream {
                                        // Keep the body open; the connection is cut below.
                                        tokio::time::sleep(Duration::from_secs(3600)).await;
                                        drop(tx);
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                    let _ = tx
                                        .send(Ok(Frame::data(Bytes::from(format!(
                                            "data: {{\"t\":{}}}\n\n",
                                            now_ms()
                                        )))))
                                        .await;
                                    let _ = tx
                                        .send(Ok(Frame::data(Bytes::from("data: [DONE]\n\n"))))
                                        .await;
                                });
                                let body = ReceiverStream(rx);
                                let mut r = Response::new(http_body_util::Either::Right(body));
                                r.headers_mut()
                                    .insert("content-type", "text/event-stream".parse().unwrap());
                                Ok(r)
                            }
                        }
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                if mode == Mode::DieMidStream {
                    // Cut the connection shortly after the first chunk: a backend that died.
                    let _ = tokio::time::timeout(Duration::from_millis(150), conn).await;
                } else {
                    let _ = conn.await;
                }
            });
        }
    });
    (url, hits)
}

struct ReceiverStream(mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);
impl hyper::body::Body for ReceiverStream {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Starts a gateway with `toml` (its `[gateway]` section); returns its URL and a stop switch.
async fn gateway(toml: &str) -> (String, watch::Sender<bool>) {
    let cfg = steward_config::parse(toml, std::path::Path::new("/srv/steward.toml")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(steward_gateway::serve(
        listener,
        steward_gateway::GatewayState::new(cfg.gateway.unwrap()),
        rx,
    ));
    (url, tx)
}

async fn post(
    url: &str,
    body: serde_json::Value,
    key: Option<&str>,
) -> (StatusCode, String, Duration) {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let t = Instant::now();
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let text =
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    (status, text, t.elapsed())
}

/// GET `url`; the status and the body as text.
async fn get(url: &str) -> (StatusCode, String) {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned(),
    )
}

fn dead_url() -> String {
    // A port that was free a moment ago: nothing listens there.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test]
async fn a_dead_primary_fails_over_with_no_client_error() {
    let secondary = backend(Mode::Ok, "secondary").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{}\", priority = 1 }}, {{ url = \"{secondary}\", priority = 2, model = \"qwen-7b\" }}]\n",
        dead_url()
    ))
    .await;
    for _ in 0..20 {
        let (status, body, _) = post(
            &gw,
            serde_json::json!({ "model": "chat", "messages": [] }),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["backend"], "secondary");
        assert_eq!(
            v["model"], "qwen-7b",
            "the model name is rewritten for that backend"
        );
    }
    let (_, text) = get(&format!("{gw}/metrics")).await;
    let ok_line = format!("steward_gateway_requests_total{{route=\"chat\",backend=\"{secondary}\",outcome=\"ok\"}} 20");
    assert!(text.contains(&ok_line), "{text}");
    for series in [
        "steward_gateway_first_byte_seconds_bucket",
        "steward_gateway_total_seconds_count{route=\"chat\"} 20",
        "steward_gateway_overhead_seconds_count{route=\"chat\"} 20",
        "steward_gateway_ejections_total",
    ] {
        assert!(text.contains(series), "no {series} in {text}");
    }
}

#[tokio::test]
async fn a_hanging_primary_costs_only_its_first_byte_timeout() {
    let primary = backend(Mode::Hang, "primary").await;
    let secondary = backend(Mode::Ok, "secondary").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\ntimeouts = {{ first_byte = \"300ms\" }}\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{primary}\", priority = 1 }}, {{ url = \"{secondary}\", priority = 2 }}]\n"
    ))
    .await;
    let (status, body, took) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("secondary"));
    assert!(took < Duration::from_millis(300 + 100), "took {took:?}");
    assert!(
        took >= Duration::from_millis(300),
        "it did wait for the primary's first byte: {took:?}"
    );
    let (_, text) = get(&format!("{gw}/metrics")).await;
    assert!(
        text.contains("steward_gateway_failovers_total{route=\"chat\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn five_hundreds_fail_over_and_all_failed_is_a_502_in_openai_shape() {
    let (bad, hits) = counted_backend(Mode::Fail500, "bad").await;
    let good = backend(Mode::Ok, "good").await;
    // No probe of the failing backend: whether one had run before the first request
    // would decide whether that request tries it at all.
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{bad}\", health = false }}, {{ url = \"{good}\", priority = 2 }}]\n[[gateway.routes]]\nmodel = \"broken\"\nretries = {{ rounds = 3, backoff = \"200ms\" }}\nbackends = [{{ url = \"{bad}\", health = false }}]\n"
    ))
    .await;
    let (status, body, _) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, took) = post(&gw, serde_json::json!({ "model": "broken" }), None).await;
    assert_eq!(status, 502);
    // Three rounds, the pauses between them 100..200 ms and then 200..400 ms.
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1 + 3,
        "one try for \"chat\", three rounds for \"broken\""
    );
    assert!(
        took >= Duration::from_millis(300),
        "the rounds backed off: {took:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("answered 500"),
        "{body}"
    );
}

#[tokio::test]
async fn streams_pass_through_chunk_by_chunk() {
    let b = backend(Mode::Stream, "s").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{b}\" }}]\n"
    ))
    .await;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("{gw}/v1/chat/completions"))
        .body(Full::new(Bytes::from(
            serde_json::json!({ "model": "chat", "stream": true }).to_string(),
        )))
        .unwrap();
    let mut body = client.request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let received_first = now_ms();
    let text = String::from_utf8_lossy(&first).into_owned();
    assert!(text.starts_with("data: {\"t\":"), "{text}");
    let mut rest = String::new();
    while let Some(f) = body.frame().await {
        rest.push_str(&String::from_utf8_lossy(&f.unwrap().into_data().unwrap()));
    }
    // The second chunk was sent after the first had already reached the client.
    let second_sent: u128 = rest
        .split("\"t\":")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        received_first <= second_sent,
        "the first chunk waited for the second: {received_first} > {second_sent}"
    );
    assert!(rest.contains("[DONE]"));
}

#[tokio::test]
async fn a_backend_dying_mid_stream_ends_it_with_an_sse_error() {
    let b = backend(Mode::DieMidStream, "d").await;
    let (gw, _stop) = gateway(&format!("[gateway]\ntimeouts = {{ idle = \"1s\" }}\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{b}\" }}]\n")).await;
    let (status, body, took) = post(
        &gw,
        serde_json::json!({ "model": "chat", "stream": true }),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.starts_with("data: {\"t\":"), "{body}");
    assert!(
        body.contains("\"type\":\"upstream_error\""),
        "no SSE error event: {body}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn keys_and_bad_input_get_openai_errors() {
    let b = backend(Mode::Ok, "ok").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\napi_keys = [\"sk-right\"]\nmax_body = \"1KiB\"\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{b}\" }}]\n"
    ))
    .await;
    // (key, body, status, what the answer must say)
    let cases = [
        (
            None,
            serde_json::json!({ "model": "chat" }),
            401,
            &["API key"][..],
        ),
        (
            Some("sk-wrong"),
            serde_json::json!({ "model": "chat" }),
            401,
            &["API key"],
        ),
        (
            Some("sk-right"),
            serde_json::json!({ "model": "chat" }),
            200,
            &["\"backend\":\"ok\""],
        ),
        (
            Some("sk-right"),
            serde_json::json!({ "model": "nope" }),
            404,
            &["model_not_found", "routes: chat"],
        ),
        (
            Some("sk-right"),
            serde_json::json!({ "messages": [] }),
            400,
            &["has no"],
        ),
        (
            Some("sk-right"),
            serde_json::json!({ "model": "chat", "pad": "x".repeat(4096) }),
            413,
            &["max_body"],
        ),
    ];
    for (key, request, status, says) in cases {
        let (s, body, _) = post(&gw, request.clone(), key).await;
        assert_eq!(s, status, "{request}: {body}");
        for part in says {
            assert!(body.contains(part), "{request}: no {part:?} in {body}");
        }
    }
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("{gw}/v1/chat/completions"))
        .header("authorization", "Bearer sk-right")
        .body(Full::new(Bytes::from("{not json")))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 400);
    let req = Request::get(format!("{gw}/v1/chat/completions"))
        .header("authorization", "Bearer sk-right")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 405);
    let req = Request::get(format!("{gw}/v1/models"))
        .header("authorization", "Bearer sk-right")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let models = client
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&models).contains("\"id\":\"chat\""));
}

#[tokio::test]
async fn a_saturated_route_answers_503_with_retry_after_within_queue_timeout() {
    let b = backend(Mode::Hang, "slow").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\ntimeouts = {{ first_byte = \"3s\" }}\nqueue_timeout = \"300ms\"\nretries = {{ rounds = 1 }}\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{b}\", max_concurrency = 1 }}]\n[[gateway.routes]]\nmodel = \"no-queue\"\nmax_queue = 0\nbackends = [{{ url = \"{b}\", max_concurrency = 1 }}]\n"
    ))
    .await;
    let gw2 = gw.clone();
    let first =
        tokio::spawn(async move { post(&gw2, serde_json::json!({ "model": "chat" }), None).await });
    wait_for_metric(
        &gw,
        &format!("steward_gateway_in_flight{{backend=\"{b}\"}} 1"),
    )
    .await;

    let post_503 = |model: &'static str| {
        let gw = gw.clone();
        async move {
            let client =
                Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
            let req = Request::post(format!("{gw}/v1/chat/completions"))
                .body(Full::new(Bytes::from(
                    serde_json::json!({ "model": model }).to_string(),
                )))
                .unwrap();
            let t = Instant::now();
            let resp = client.request(req).await.unwrap();
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
            t.elapsed()
        }
    };
    // It waits in the queue for queue_timeout, then gets 503: never an unbounded pile-up.
    let took = post_503("chat").await;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(300 + 200),
        "answered after {took:?}, queue_timeout is 300 ms"
    );
    // With no room in the queue, 503 at once.
    let took = post_503("no-queue").await;
    assert!(took < Duration::from_millis(200), "answered after {took:?}");
    let (s, _, _) = first.await.unwrap();
    assert_eq!(s, 502, "the hanging backend is given up after first_byte");
    let (_, text) = get(&format!("{gw}/metrics")).await;
    assert!(
        text.contains(
            "steward_gateway_requests_total{route=\"chat\",backend=\"\",outcome=\"overloaded\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_queued_request_is_served_when_a_slot_frees() {
    let (b, hits) = counted_backend(Mode::Slow, "slow").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\nqueue_timeout = \"10s\"\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{b}\", max_concurrency = 1 }}]\n"
    ))
    .await;
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(
                async move { post(&gw, serde_json::json!({ "model": "chat" }), None).await },
            )
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for r in requests {
        let (s, body, took) = r.await.unwrap();
        assert_eq!(s, 200, "{body}");
        slowest = slowest.max(took);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // One at a time, 300 ms each: the last waited for the two before it.
    assert!(slowest >= Duration::from_millis(600), "{slowest:?}");
}

#[tokio::test]
async fn the_retry_budget_caps_retries_when_every_backend_fails() {
    let (a, hits_a) = counted_backend(Mode::Fail500, "a").await;
    let (b, hits_b) = counted_backend(Mode::Fail500, "b").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\nretry_budget = {{ ratio = 0.2, min_retries = 2, window = \"1m\" }}\nretries = {{ rounds = 1 }}\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{a}\" }}, {{ url = \"{b}\", priority = 2 }}]\n"
    ))
    .await;
    let mut refused = 0;
    for _ in 0..50 {
        let (s, body, _) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
        assert_eq!(s, 502, "{body}");
        refused += usize::from(body.contains("retry budget spent"));
    }
    // Without a budget every request would be tried twice: 100 tries. With it, 50 first
    // tries and at most 20% of 50 plus 2 retries.
    let tries = hits_a.load(Ordering::SeqCst) + hits_b.load(Ordering::SeqCst);
    assert!((52..=62).contains(&tries), "{tries} tries for 50 requests");
    assert_eq!(
        refused as u32,
        100 - tries,
        "each request not retried says why"
    );
    let (_, text) = get(&format!("{gw}/metrics")).await;
    assert!(
        text.contains(&format!(
            "steward_gateway_retry_budget_refusals_total{{route=\"chat\"}} {refused}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_that_only_pings_fails_over_at_its_first_byte_timeout() {
    let pinger = backend(Mode::PingOnly, "pinger").await;
    let streamer = backend(Mode::Stream, "streamer").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\ntimeouts = {{ first_byte = \"300ms\" }}\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{pinger}\" }}, {{ url = \"{streamer}\", priority = 2 }}]\n"
    ))
    .await;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("{gw}/v1/chat/completions"))
        .body(Full::new(Bytes::from(
            serde_json::json!({ "model": "chat", "stream": true }).to_string(),
        )))
        .unwrap();
    let t = Instant::now();
    let resp = client.request(req).await.unwrap();
    let head = t.elapsed();
    assert_eq!(resp.status(), 200);
    // Named by its place in the route, never by its (internal) URL.
    assert_eq!(resp.headers().get("x-steward-backend").unwrap(), "chat#1");
    assert!(
        head >= Duration::from_millis(300) && head < Duration::from_millis(300 + 100),
        "pings are liveness, not a first byte: head after {head:?}"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains("ping"),
        "nothing of the pinger reached the client: {text}"
    );
    assert!(text.contains("[DONE]"), "{text}");
}

/// Polls the gateway's /metrics until a line is there (10 s at most).
async fn wait_for_metric(gw: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = get(&format!("{gw}/metrics")).await;
        if text.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let cancelled = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let flag = cancelled.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
            let flag = flag.clone();
            async move {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
                tokio::spawn(async move {
                    // A long generation, one token every 50 ms.
                    for i in 0..200 {
                        if tx
                            .send(Ok(Frame::data(Bytes::from(format!("data: {i}\n\n")))))
                            .await
                            .is_err()
                        {
                            flag.store(true, Ordering::SeqCst);
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
                Ok::<_, Infallible>(Response::new(ReceiverStream(rx)))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .await;
    });
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{url}\" }}]\n"
    ))
    .await;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::post(format!("{gw}/v1/chat/completions"))
        .body(Full::new(Bytes::from(
            serde_json::json!({ "model": "chat", "stream": true }).to_string(),
        )))
        .unwrap();
    let mut body = client.request(req).await.unwrap().into_body();
    let _ = body.frame().await;
    drop(body);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cancelled.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the backend kept generating for a client that left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_primary_is_ejected_and_traffic_returns_once_its_probe_passes() {
    // The primary's port, held free for it to come back on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let primary = format!("http://127.0.0.1:{port}");
    let secondary = backend(Mode::Ok, "secondary").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{primary}\", priority = 1 }}, {{ url = \"{secondary}\", priority = 2 }}]\n"
    ))
    .await;
    // Primary down: every request is served by the secondary, none fails.
    for _ in 0..5 {
        let (s, body, _) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
        assert_eq!(s, 200);
        assert!(body.contains("secondary"), "{body}");
    }
    let (status, text) = get(&format!("{gw}/health")).await;
    assert_eq!(status, 200, "the route still has its secondary: {text}");
    assert!(
        text.contains(&primary),
        "the down backend is listed: {text}"
    );

    // The primary comes back on its port; once a probe passes, traffic returns to it.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                        "{\"backend\":\"primary\"}",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, body, _) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
        assert_eq!(s, 200);
        if body.contains("primary") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traffic never returned to the primary"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backend_answering_non_json_fails_over_and_alone_is_a_502() {
    let garbage = backend(Mode::NotJson, "garbage").await;
    let good = backend(Mode::Ok, "good").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\nretries = {{ rounds = 1 }}\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{garbage}\" }}, {{ url = \"{good}\", priority = 2 }}]\n[[gateway.routes]]\nmodel = \"only-garbage\"\nbackends = [{{ url = \"{garbage}\" }}]\n"
    ))
    .await;
    let (status, body, _) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"backend\":\"good\""), "{body}");
    let (status, body, _) = post(&gw, serde_json::json!({ "model": "only-garbage" }), None).await;
    assert_eq!(status, 502, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("the error is JSON");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );
}

/// Writes `bytes` to the gateway on a raw connection, then reads until it closes (10 s at
/// most); what came back and how long it took.
async fn raw_exchange(gw: &str, bytes: &[u8]) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(gw.trim_start_matches("http://"))
        .await
        .unwrap();
    let t = Instant::now();
    c.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

#[tokio::test]
async fn slow_loris_clients_and_huge_headers_are_cut_off() {
    let b = backend(Mode::Ok, "ok").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\nclient_timeout = \"300ms\"\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{b}\" }}]\n"
    ))
    .await;
    // Headers that never end: the connection is closed at client_timeout.
    let (_, took) = raw_exchange(&gw, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n").await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // A body that never ends: 408 in OpenAI's shape.
    let (answer, took) = raw_exchange(
        &gw,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"model\"",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {took:?}: {answer}"
    );
    assert!(answer.contains("client_timeout"), "{answer}");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    // Headers over 64 KiB: 431.
    let huge = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (answer, _) = raw_exchange(&gw, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
}

#[tokio::test]
async fn a_429_fails_over_and_holds_its_backend_off_for_retry_after() {
    let (busy, busy_hits) = counted_backend(Mode::TooMany, "busy").await;
    let other = backend(Mode::Ok, "other").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{busy}\" }}, {{ url = \"{other}\", priority = 2 }}]\n"
    ))
    .await;
    // Probes of the busy backend pass (it is up) while requests go on: the hold-off stays.
    for _ in 0..6 {
        let (s, body, _) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("\"backend\":\"other\""), "{body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(
        busy_hits.load(Ordering::SeqCst),
        1,
        "nothing more went to the backend that asked for 30 s"
    );
    let (_, health) = get(&format!("{gw}/health")).await;
    assert!(health.contains("held off (429 Retry-After)"), "{health}");
}

#[tokio::test]
async fn a_backend_still_loading_is_not_routed_to() {
    let (loading, loading_hits) = counted_backend(Mode::Loading, "loading").await;
    let ready = backend(Mode::Ok, "ready").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{loading}\" }}, {{ url = \"{ready}\", priority = 2 }}]\n"
    ))
    .await;
    wait_for_metric(
        &gw,
        &format!("steward_gateway_backend_up{{backend=\"{loading}\"}} 0"),
    )
    .await;
    for _ in 0..5 {
        let (s, body, _) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("\"backend\":\"ready\""), "{body}");
    }
    assert_eq!(loading_hits.load(Ordering::SeqCst), 0);
    let (_, health) = get(&format!("{gw}/health")).await;
    assert!(health.contains("\"state\":\"loading\""), "{health}");
}

#[tokio::test]
async fn a_client_that_leaves_a_non_streaming_request_cancels_it_upstream() {
    use std::sync::atomic::AtomicBool;
    // A backend that never answers and notes when its request is dropped (the gateway
    // closed the connection).
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let flag = cancelled.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let flag = flag.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let flag = flag.clone();
                    async move {
                        if req.uri().path() != "/health" {
                            let _armed = Flag(flag);
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("{}"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{url}\" }}]\n"
    ))
    .await;
    wait_for_metric(
        &gw,
        &format!("steward_gateway_backend_up{{backend=\"{url}\"}} 1"),
    )
    .await;
    let gw2 = gw.clone();
    let client =
        tokio::spawn(async move { post(&gw2, serde_json::json!({ "model": "chat" }), None).await });
    wait_for_metric(
        &gw,
        &format!("steward_gateway_in_flight{{backend=\"{url}\"}} 1"),
    )
    .await;
    client.abort(); // the client goes away mid-request
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cancelled.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the backend still holds the request of a client that left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_metric(
        &gw,
        &format!("steward_gateway_in_flight{{backend=\"{url}\"}} 0"),
    )
    .await;
}

#[tokio::test]
async fn a_backend_without_a_health_endpoint_is_down_unless_its_probe_is_off() {
    let probed = backend(Mode::NoHealth, "probed").await;
    let unprobed = backend(Mode::NoHealth, "unprobed").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"a\"\nbackends = [{{ url = \"{probed}\" }}]\n[[gateway.routes]]\nmodel = \"b\"\nbackends = [{{ url = \"{unprobed}\", health = false }}]\n"
    ))
    .await;
    // The one probe rule: 404 is down, and /health says how to fix it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, text) = get(&format!("{gw}/health")).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break text;
        }
        assert!(Instant::now() < deadline, "never down: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("404"), "{text}");
    assert!(text.contains("or false for no probe"), "{text}");
    assert!(
        !text.contains(&unprobed),
        "the unprobed backend is not down: {text}"
    );
    let (status, body, _) = post(
        &gw,
        serde_json::json!({ "model": "b", "messages": [] }),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("unprobed"), "{body}");
}

#[tokio::test]
async fn the_backend_header_names_a_backend_never_its_url() {
    let named = backend(Mode::Ok, "named").await;
    let plain = backend(Mode::Ok, "plain").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"a\"\nbackends = [{{ url = \"{named}\", name = \"gpu-a\" }}]\n[[gateway.routes]]\nmodel = \"b\"\nbackends = [{{ url = \"{plain}\" }}]\n"
    ))
    .await;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (model, shown) in [("a", "gpu-a"), ("b", "b#0")] {
        let req = Request::post(format!("{gw}/v1/chat/completions"))
            .body(Full::new(Bytes::from(
                serde_json::json!({ "model": model }).to_string(),
            )))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let header = resp
            .headers()
            .get("x-steward-backend")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(header, shown);
        assert!(!header.contains("127.0.0.1"));
    }
}

#[tokio::test]
async fn a_route_whose_backends_hang_answers_504_at_once_and_tries_again_later() {
    let (a, a_hits) = counted_backend(Mode::Hang, "a").await;
    let (b, b_hits) = counted_backend(Mode::Hang, "b").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\ntimeouts = {{ first_byte = \"300ms\" }}\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{a}\", health = false }}, {{ url = \"{b}\", health = false, priority = 2 }}]\n"
    ))
    .await;
    // The first request finds out: both time out, and it is told so (504, not 502).
    let (status, body, took) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(
        took >= Duration::from_millis(600),
        "both were tried once: {took:?}"
    );
    // While they are known to hang, a request is not made to wait on them again.
    let (status, body, took) = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(
        took < Duration::from_millis(250),
        "answered at once: {took:?}"
    );
    assert!(body.contains("timed out on its last tries"), "{body}");
    assert_eq!(
        a_hits.load(Ordering::SeqCst) + b_hits.load(Ordering::SeqCst),
        2
    );
    // Yet one trial per cooldown goes, so a recovery would be seen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a_hits.load(Ordering::SeqCst) + b_hits.load(Ordering::SeqCst) == 2 {
        assert!(Instant::now() < deadline, "no trial request ever went");
        let _ = post(&gw, serde_json::json!({ "model": "chat" }), None).await;
    }
    let (_, text) = get(&format!("{gw}/metrics")).await;
    assert!(text.contains("reason=\"head_timeout\"} "), "{text}");
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let ok = backend(Mode::Ok, "ok").await;
    let (gw, _stop) = gateway(&format!(
        "[gateway]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{ok}\" }}]\n"
    ))
    .await;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::post(format!("{gw}/v1/chat/completions"));
    for i in 0..150 {
        req = req.header(format!("x-pad-{i}"), "1");
    }
    let resp = client
        .request(
            req.body(Full::new(Bytes::from("{\"model\":\"chat\"}")))
                .unwrap(),
        )
        .await
        .unwrap();
    // Over hyper's 100 fields: refused before any handler runs (so without a body).
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

/// This machine's first IPv4 address that is not loopback, if it has one.
fn outside_address() -> Option<std::net::Ipv4Addr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse::<std::net::Ipv4Addr>().ok())
        .find(|ip| !ip.is_loopback())
}

#[tokio::test]
async fn metrics_need_no_key_from_loopback_or_on_their_own_listener_but_do_from_outside() {
    let ok = backend(Mode::Ok, "ok").await;
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = steward_config::parse(
        &format!("[gateway]\nlisten = \"0.0.0.0:{port}\"\napi_keys = [\"sk-right\"]\nmetrics_listen = \"127.0.0.1:0\"\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"{ok}\" }}]\n"),
        std::path::Path::new("/srv/steward.toml"),
    )
    .unwrap();
    let state = steward_gateway::GatewayState::new(cfg.gateway.unwrap());
    let (_tx, rx) = watch::channel(false);
    let main = TcpListener::bind(("0.0.0.0", port)).await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}", metrics.local_addr().unwrap());
    tokio::spawn(steward_gateway::serve(main, state.clone(), rx.clone()));
    tokio::spawn(steward_gateway::serve_metrics(metrics, state, rx));
    let (status, text) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a local scraper sends no key: {text}"
    );
    let (status, _) = get(&format!("http://127.0.0.1:{port}/v1/models")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the rest still needs the key"
    );
    let (status, text) = get(&format!("{metrics_url}/metrics")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("steward_gateway_backend_up"), "{text}");
    let (status, _) = get(&format!("{metrics_url}/v1/models")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "metrics_listen serves /metrics only"
    );
    let Some(ip) = outside_address() else {
        panic!("this test needs a non-loopback IPv4 address on this machine (ip -4 addr)");
    };
    let (status, _) = get(&format!("http://{ip}:{port}/metrics")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "from outside loopback, the key is needed"
    );
}
