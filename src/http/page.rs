//! The live limits page at `GET /`: one self-contained HTML file (inline CSS and JavaScript,
//! nothing fetched from elsewhere) that shows every limit with a usage bar and polls
//! `GET /v1/admin/limits` every second. It is embedded in the binary, so it needs no build
//! step and no files beside `ratelimiterd`.

use actix_web::http::header;
use actix_web::HttpResponse;

/// The page itself (`src/http/page/index.html`).
const INDEX_HTML: &str = include_str!("page/index.html");

/// Only what the page needs: its own inline style and script, and requests to this server.
/// The page builds its DOM from text nodes, so keys (user data) can never become markup.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the page, revalidated on every load (`no-cache`) so an upgraded server is never
/// shown through an old page.
pub(crate) async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(INDEX_HTML)
}
