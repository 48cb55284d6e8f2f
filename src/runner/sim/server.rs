//! HTTP side of the simulator: `POST /v1/chat/completions` (also `/chat/completions`),
//! `GET /v1/models`, `GET /sim/stats`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use super::script::Reply;
use super::SimState;
use crate::runner::provider::{ChatRequest, TokenUsage};

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Runs the server on a new thread; returns the bound address and its handle.
pub(super) fn spawn(
    listen: SocketAddr,
    state: Arc<SimState>,
) -> std::io::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("llm-sim".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let data = web::Data::from(state);
                let bound = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                        .route("/v1/chat/completions", web::post().to(chat))
                        .route("/chat/completions", web::post().to(chat))
                        .route("/v1/models", web::get().to(models))
                        .route("/sim/stats", web::get().to(stats))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .bind(listen);
                let server = match bound {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let addr = server.addrs().first().copied().unwrap_or(listen);
                let running = server.run();
                let _ = tx.send(Ok((addr, running.handle())));
                let _ = running.await;
            });
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("llm-sim thread ended before binding"))?
}

async fn stats(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

async fn models() -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"object": "list", "data": [{"id": "llm-sim", "object": "model"}]}))
}

fn error_body(message: &str, kind: &str) -> serde_json::Value {
    json!({"error": {"message": message, "type": kind}})
}

fn tokens_of(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

fn too_many(wait: Duration, message: &str) -> HttpResponse {
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", ms.div_ceil(1000).to_string()))
        .insert_header(("retry-after-ms", ms.to_string()))
        .json(error_body(message, "rate_limit_exceeded"))
}

async fn chat(state: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return HttpResponse::BadRequest().json(error_body(
                &format!("invalid request body: {e}"),
                "invalid_request_error",
            ))
        }
    };
    let prompt_tokens = tokens_of(
        serde_json::to_vec(&request.messages)
            .map(|b| b.len())
            .unwrap_or(0),
    );
    let charge = prompt_tokens.saturating_add(request.max_tokens.unwrap_or(0));
    let admitted = {
        let Ok(mut window) = state.window.lock() else {
            return HttpResponse::InternalServerError()
                .json(error_body("state lock poisoned", "server_error"));
        };
        let result = window.admit(Instant::now(), charge);
        if result.is_ok() {
            state
                .max_in_flight
                .fetch_max(window.in_flight(), Ordering::SeqCst);
        }
        result
    };
    let id = match admitted {
        Ok(id) => id,
        Err((why, wait)) => {
            state.rate_limited.fetch_add(1, Ordering::SeqCst);
            state.status_429.fetch_add(1, Ordering::SeqCst);
            return too_many(wait, &format!("simulated {} limit exceeded", why.as_str()));
        }
    };
    let rule = state.script.rule_for(&request);
    let reply = rule.reply(&request);
    let latency = Duration::from_millis(
        rule.latency_ms(u64::try_from(state.latency.as_millis()).unwrap_or(0)),
    );
    if !latency.is_zero() {
        actix_rt::time::sleep(latency).await;
    }
    let finish = |actual: u64| {
        if let Ok(mut window) = state.window.lock() {
            window.finish(id, actual);
        }
    };
    match reply {
        Reply::Fail {
            status,
            retry_after_ms,
        } => {
            finish(0);
            state.scripted_errors.fetch_add(1, Ordering::SeqCst);
            if status == 429 {
                state.status_429.fetch_add(1, Ordering::SeqCst);
                return too_many(Duration::from_millis(retry_after_ms), "scripted rate limit");
            }
            let code = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            HttpResponse::build(code)
                .insert_header(("retry-after-ms", retry_after_ms.to_string()))
                .json(error_body(
                    &format!("scripted failure {status}"),
                    "server_error",
                ))
        }
        Reply::Message { message, usage } => {
            let reply_bytes = message.content.as_deref().map_or(0, str::len)
                + serde_json::to_vec(&message.tool_calls).map_or(0, |b| b.len());
            let usage = usage.unwrap_or(TokenUsage {
                prompt_tokens,
                completion_tokens: tokens_of(reply_bytes).max(1),
                total_tokens: 0,
            });
            let usage = TokenUsage {
                total_tokens: usage.total(),
                ..usage
            };
            finish(usage.total());
            state.ok.fetch_add(1, Ordering::SeqCst);
            state
                .prompt_tokens
                .fetch_add(usage.prompt_tokens, Ordering::SeqCst);
            state
                .completion_tokens
                .fetch_add(usage.completion_tokens, Ordering::SeqCst);
            let finish_reason = if message.tool_calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            HttpResponse::Ok().json(json!({
                "id": format!("chatcmpl-sim-{id}"),
                "object": "chat.completion",
                "model": request.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": usage,
            }))
        }
    }
}
