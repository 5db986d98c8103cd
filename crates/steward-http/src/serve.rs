//! The listener and its routes: bound at start (a port in use stops `up` before anything
//! runs), served by the shared server loop until the agent's shutdown. Every request is
//! authenticated first (see `auth`); actions also need POST, this page's origin and a
//! config that is not `read_only`.

use crate::api::{self, Query};
use crate::auth::{self, Caller, Sessions};
use crate::reply::{error, whole, Reply};
use crate::{actions, health, metrics, page, sse, AgentView};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use std::sync::Arc;
use steward_config::Http;
use steward_net::ServerOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct HttpListener {
    listener: TcpListener,
    config: Http,
}

impl HttpListener {
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// Binds `[http] listen`, naming it when that fails.
pub async fn bind(config: &Http) -> Result<HttpListener, String> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "[http] listen: cannot listen on {}: {e}; is another agent or program on it? Choose another port in [http] listen",
            config.listen
        )
    })?;
    Ok(HttpListener {
        listener,
        config: config.clone(),
    })
}

struct Face {
    view: Arc<dyn AgentView>,
    config: Http,
    sessions: Sessions,
    shutdown: watch::Receiver<bool>,
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: HttpListener,
    view: Arc<dyn AgentView>,
    shutdown: watch::Receiver<bool>,
) {
    let face = Arc::new(Face {
        view,
        config: listener.config,
        sessions: Sessions::default(),
        shutdown: shutdown.clone(),
    });
    tracing::info!("http on http://{}", face.config.listen);
    steward_net::serve(
        listener.listener,
        ServerOptions::default(),
        shutdown,
        move |req| {
            let face = face.clone();
            async move { face.answer(req).await }
        },
    )
    .await;
}

impl Face {
    async fn answer(&self, req: Request<Incoming>) -> Reply {
        let path = req.uri().path().to_string();
        if path == "/login" {
            return self.login(req).await;
        }
        if let Some(asset) = page::asset(&path) {
            return asset;
        }
        let Some(caller) = auth::caller(req.headers(), self.config.token.as_ref(), &self.sessions)
        else {
            return self.refuse(&req);
        };
        let q = Query::parse(req.uri().query());
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let view = &*self.view;
        let method = req.method().clone();
        if method == Method::POST {
            return self.act(&req, caller, &parts, &q).await;
        }
        if method != Method::GET && method != Method::HEAD {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET to read, POST for an action",
            );
        }
        match parts.as_slice() {
            [""] => page::dashboard(),
            ["health"] | ["ready"] => {
                let (status, body) = health::health_reply(&view.services());
                crate::reply::json(status, &body)
            }
            ["metrics"] => self.metrics(&req).await,
            ["api", "v1", "services"] => api::services(view),
            ["api", "v1", "services", name, "logs"] => api::logs(view, name, &q),
            ["api", "v1", "queues"] => api::queues(view).await,
            ["api", "v1", "jobs"] => api::jobs(view, &q).await,
            ["api", "v1", "jobs", id] => api::job(view, id).await,
            ["api", "v1", "gateway"] => api::gateway(view),
            ["api", "v1", "events"] => sse::stream(self.view.clone(), self.shutdown.clone()),
            ["api", "v1", "events", "recent"] => api::recent_events(view),
            ["api", "v1", "node"] => crate::reply::json(StatusCode::OK, &view.node().await),
            ["api", "v1", "nodes"] => api::fleet(view).await,
            _ => error(StatusCode::NOT_FOUND, &format!("no such page or endpoint: {path}; see / for the dashboard, /health, /ready, /metrics, /api/v1/…")),
        }
    }

    async fn act(
        &self,
        req: &Request<Incoming>,
        caller: Caller,
        parts: &[&str],
        q: &Query,
    ) -> Reply {
        let view = &*self.view;
        let known = matches!(
            parts,
            ["api", "v1", "services", _, _]
                | ["api", "v1", "jobs", _, _]
                | ["api", "v1", "jobs", _]
        );
        if !known {
            return error(StatusCode::NOT_FOUND, "no such action; actions are POST /api/v1/services/NAME/{start,stop,restart}, /api/v1/jobs/ID/{retry,cancel} and /api/v1/jobs/{retry,cancel}?queue=&state=&q=");
        }
        if self.config.read_only {
            return error(StatusCode::FORBIDDEN, "this agent's [http] is read_only: actions are refused; use the steward CLI on the node");
        }
        if !auth::same_origin(req.headers(), caller) {
            return error(
                StatusCode::FORBIDDEN,
                "refused: the request comes from another site (its Origin is not this agent's)",
            );
        }
        match parts {
            ["api", "v1", "services", name, verb] => actions::service(view, name, verb).await,
            ["api", "v1", "jobs", id, verb] => actions::one_job(view, id, verb).await,
            ["api", "v1", "jobs", verb] => actions::matching_jobs(view, verb, q).await,
            _ => error(StatusCode::NOT_FOUND, "no such action"),
        }
    }

    /// No or a wrong token: a person gets the login form, a program a 401.
    fn refuse(&self, req: &Request<Incoming>) -> Reply {
        let wants_html = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        if req.method() == Method::GET && wants_html {
            return page::login(StatusCode::UNAUTHORIZED, None);
        }
        let mut reply = error(
            StatusCode::UNAUTHORIZED,
            if self.config.token.is_some() {
                "missing or wrong token: send Authorization: Bearer <[http] token>, or log in at /login"
            } else {
                "refused: without a [http] token only loopback host names (127.0.0.1, localhost) may be used"
            },
        );
        reply.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        reply
    }

    /// `GET /login`: the form; `POST /login` with `token=`: a session cookie, then the page.
    async fn login(&self, req: Request<Incoming>) -> Reply {
        let Some(token) = self.config.token.as_ref() else {
            return redirect_home(None);
        };
        if req.method() != Method::POST {
            return page::login(StatusCode::OK, None);
        }
        let body = match steward_net::read_body(
            req.into_body(),
            4096,
            tokio::time::Instant::now() + std::time::Duration::from_secs(10),
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return error(e.status(), &e.to_string()),
        };
        let given = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !auth::token_matches(&given, token) {
            return page::login(
                StatusCode::UNAUTHORIZED,
                Some("That is not this agent's token."),
            );
        }
        match self.sessions.open() {
            Some(id) => redirect_home(Some(&id)),
            None => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot open a session: /dev/urandom cannot be read",
            ),
        }
    }

    async fn metrics(&self, req: &Request<Incoming>) -> Reply {
        let view = &*self.view;
        let services = view.services();
        let gpu = steward_api::attribute_gpu_memory(&services, &view.gpu_processes());
        // A queue that does not answer leaves its series out of this scrape.
        let queues = match api::queue_stats(view).await {
            Some(Ok(stats)) => stats
                .into_iter()
                .map(|s| (s.queue.unwrap_or_default(), s.counts))
                .collect(),
            _ => Vec::new(),
        };
        let scrape = metrics::Scrape {
            services,
            agent: view.agent(),
            cgroup_mode: view.cgroup_mode(),
            counts: view.counts(),
            gpu,
            queues,
        };
        let gateway = view.gateway().map(|g| g.metrics);
        let text = metrics::encode(scrape, gateway.as_deref());
        let openmetrics = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/openmetrics-text"));
        if openmetrics {
            whole(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        } else {
            whole(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::classic(&text),
            )
        }
    }
}

fn redirect_home(session: Option<&str>) -> Reply {
    let mut r = whole(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    let h = r.headers_mut();
    h.insert(
        hyper::header::LOCATION,
        hyper::header::HeaderValue::from_static("/"),
    );
    if let Some(id) = session {
        let cookie = format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict",
            auth::COOKIE_NAME
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&cookie) {
            h.insert(hyper::header::SET_COOKIE, v);
        }
    }
    r
}
