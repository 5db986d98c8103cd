//! The dashboard page, embedded in the binary (no CDN, no build step): one HTML file, its
//! script and its style sheet, served with a Content-Security-Policy that allows only
//! them, so nothing that reaches the page as data can run as script. And the login form.

use crate::reply::{whole, Reply};
use hyper::header::HeaderValue;
use hyper::StatusCode;

const DASHBOARD: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn guarded(mut r: Reply) -> Reply {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(POLICY));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

pub fn dashboard() -> Reply {
    guarded(whole(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD))
}

/// `/app.js` and `/app.css`, which hold nothing secret: served to anyone, so the login
/// form has its style.
pub fn asset(path: &str) -> Option<Reply> {
    let (ct, body) = match path {
        "/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/app.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(guarded(whole(StatusCode::OK, ct, body)))
}

pub fn login(status: StatusCode, problem: Option<&'static str>) -> Reply {
    let problem = problem
        .map(|p| format!("<p class=\"error\">{p}</p>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>steward: log in</title>\
         <link rel=\"stylesheet\" href=\"/app.css\"></head><body><form class=\"login\" method=\"post\" action=\"/login\">\
         <h2>steward</h2><p>This agent asks for its token ([http] token in its config).</p>{problem}\
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus placeholder=\"token\">\
         <button type=\"submit\">log in</button></form></body></html>"
    );
    guarded(whole(status, "text/html; charset=utf-8", html))
}
