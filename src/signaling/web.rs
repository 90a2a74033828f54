//! The browser guest page: static files embedded in the binary, served next to `/ws`.
//!
//! No build step and nothing fetched from elsewhere: the Content-Security-Policy
//! allows only this origin, plus WebSockets to the host the page was loaded from (its
//! `/ws`, and a Janus on that host for SFU rooms).

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../../assets/web/index.html");
/// The page's scripts: `app.js` and the ES modules it imports, and two classic scripts.
const SCRIPTS: [(&str, &str); 7] = [
    ("/app.js", include_str!("../../assets/web/app.js")),
    ("/page.js", include_str!("../../assets/web/page.js")),
    (
        "/signaling.js",
        include_str!("../../assets/web/signaling.js"),
    ),
    ("/mesh.js", include_str!("../../assets/web/mesh.js")),
    (
        "/room_media.js",
        include_str!("../../assets/web/room_media.js"),
    ),
    ("/sfu.js", include_str!("../../assets/web/sfu.js")),
    ("/barcode.js", include_str!("../../assets/web/barcode.js")),
];
const STYLE_CSS: &str = include_str!("../../assets/web/style.css");

/// Routes of the web client: `/`, `/index.html` and its scripts and style sheet.
pub fn router() -> Router {
    let r = Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route(
            "/style.css",
            get(|| asset(STYLE_CSS, "text/css; charset=utf-8")),
        )
        // Browsers ask for it on every page; an empty answer keeps their consoles clean.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }));
    SCRIPTS.into_iter().fold(r, |r, (path, body)| {
        r.route(
            path,
            get(move || asset(body, "text/javascript; charset=utf-8")),
        )
    })
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    let csp = content_security_policy(headers.get(header::HOST));
    let mut r = asset(INDEX_HTML, "text/html; charset=utf-8").await;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Self only; `connect-src` names the ws/wss endpoint of the requested host
/// explicitly, as older browsers don't let `'self'` cover WebSocket schemes, and
/// WebSockets to any port of that host: a Janus beside the server (SFU rooms).
pub fn content_security_policy(host: Option<&HeaderValue>) -> String {
    let host = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plain_host(h));
    let connect = match host {
        Some(h) => {
            let name = host_name(h);
            format!("'self' ws://{h} wss://{h} ws://{name}:* wss://{name}:*")
        }
        None => "'self'".to_string(),
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob: mediastream:; connect-src {connect}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The host of a Host header, without its port (`[::1]:80` -> `[::1]`).
fn host_name(h: &str) -> &str {
    match h.rfind(':') {
        Some(i) if !h[i..].contains(']') => &h[..i],
        _ => h,
    }
}

/// A Host header fit to be copied into a header value: name or address and port only.
fn is_plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_names_the_websocket_of_the_host_and_refuses_odd_hosts() {
        let ok = HeaderValue::from_static("127.0.0.1:8787");
        let csp = content_security_policy(Some(&ok));
        assert!(csp.contains(
            "connect-src 'self' ws://127.0.0.1:8787 wss://127.0.0.1:8787 \
             ws://127.0.0.1:* wss://127.0.0.1:*;"
        ));
        let v6 = HeaderValue::from_static("[::1]:8787");
        assert!(content_security_policy(Some(&v6)).contains("ws://[::1]:* wss://[::1]:*;"));
        let bare = HeaderValue::from_static("confab.example");
        assert!(
            content_security_policy(Some(&bare))
                .contains("wss://confab.example ws://confab.example:* wss://confab.example:*;")
        );
        let odd = HeaderValue::from_static("evil.example; script-src *");
        assert!(content_security_policy(Some(&odd)).contains("connect-src 'self';"));
    }
}
