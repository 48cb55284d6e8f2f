//! The HTTP ceiling for `POST /v1/reserve`: a bare actix-web server that parses the same JSON
//! body into the same request type as ratelimiterd (a JSON object, `ReserveRequest`, the same
//! body limit) and answers a fixed `ReserveResponse`, with no limiter behind it. Whatever
//! ratelimiterd reaches under the same load, as a fraction of this server, is what the
//! limiter costs on top of HTTP and JSON. Driven by `benches/http/run.sh`.
//!
//! Usage: `cargo run --release --example http_ceiling -- <listen addr> <workers>`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::marker::PhantomData;

use actix_web::{web, App, HttpServer};
use ratelimiter::model::{ReserveRequest, ReserveResponse};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The same allocator as ratelimiterd, so the two servers differ only in what they do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A body that must be a JSON object, exactly as ratelimiterd reads it.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// Parses the reserve body and answers a fixed "allowed" reply of the real shape.
async fn reserve(body: web::Json<Object<ReserveRequest>>) -> web::Json<ReserveResponse> {
    let request = body.into_inner().0;
    // Keep the parsed request observable so the parse cannot be optimised away.
    std::hint::black_box(&request);
    web::Json(ReserveResponse::allowed(1_764_000_000_000))
}

fn main() -> std::io::Result<()> {
    // Same process settings as ratelimiterd.
    ratelimiter::http::huge_pages::disable_transparent_huge_pages();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18090".to_string());
    let workers: usize = args
        .next()
        .map(|w| w.parse().expect("workers: a positive number"))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .app_data(web::JsonConfig::default().limit(1 << 20))
                .route("/v1/reserve", web::post().to(reserve))
        })
        .workers(workers.max(1))
        .bind(&listen)?
        .run()
        .await
    })
}
