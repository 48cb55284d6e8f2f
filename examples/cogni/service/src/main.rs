//! A tiny HTTP service: the repository the Cogni demo asks questions about.

use axum::{routing::get, Router};

const DEFAULT_PORT: u16 = 8080;

#[tokio::main]
async fn main() {
    let port = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT);
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
