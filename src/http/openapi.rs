//! The OpenAPI 3.1 document of the HTTP API. It is derived from the wire types
//! (`ToSchema`) and the handlers' `#[utoipa::path]` annotations, served at
//! `GET /openapi.json` and committed as `docs/openapi.json`; the integration tests keep the
//! committed file, the served document, the routes and the real answers in agreement.

use std::sync::LazyLock;

use actix_web::http::header::ContentType;
use actix_web::web;
use actix_web::HttpResponse;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem};
use utoipa::openapi::schema::{Schema, Type};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::OpenApi;

use super::error::ErrorBody;
use super::{admin, data, server};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Name of the shared 405 answer under `components.responses`.
const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ratelimiterd",
        description = "A shared rate-limit service for LLM calls: reserve capacity on every limit a call needs (all or nothing), complete with what it really used, define limits at run time.\n\nEvery body is JSON unless an operation says otherwise. A path that is not listed answers 404 `not_found`, and a listed path asked with a method it does not list answers 405 `method_not_allowed`, both with an `ErrorBody`. No authentication: bind to loopback or a trusted network."
    ),
    paths(
        data::reserve,
        data::complete,
        data::reserve_batch,
        data::complete_batch,
        admin::put_limit,
        admin::list_limits,
        admin::get_limit,
        server::healthz,
        server::readyz,
        serve,
    ),
    tags(
        (name = "data", description = "The hot path: reserve before a call, complete after it."),
        (name = "admin", description = "Define limits and read their live usage."),
        (name = "operations", description = "Probes, metrics, the limits page and this document."),
    )
)]
struct ApiDoc;

/// The OpenAPI document of every route `ratelimiterd` serves.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    add_pages(&mut doc);
    add_method_not_allowed(&mut doc);
    open_flattened_parts(&mut doc);
    doc
}

/// [`document`] as pretty-printed JSON with a final newline: the exact content of
/// `docs/openapi.json` and of the `GET /openapi.json` answer.
pub fn document_json() -> Result<String, serde_json::Error> {
    document().to_pretty_json().map(|json| json + "\n")
}

/// The routes that answer text rather than JSON: the Prometheus metrics and the limits page.
fn add_pages(doc: &mut Document) {
    let text = |media: &str, description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                media,
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            )
            .build()
    };
    let page = |id: &str, summary: &str, description: &str, ok: Response| {
        OperationBuilder::new()
            .tag("operations")
            .operation_id(Some(id))
            .summary(Some(summary))
            .description(Some(description))
            .response("200", ok)
            .build()
    };
    doc.paths.add_path_operation(
        "/metrics",
        vec![HttpMethod::Get],
        page(
            "metrics",
            "Prometheus metrics",
            "Every series in the Prometheus text exposition format: per key `ratelimiter_limit_capacity`, `_in_use`, `_available`, `_debt`, `_decreasing`; `ratelimiter_reserve_total` and `ratelimiter_complete_total` by outcome; `ratelimiter_request_duration_seconds` by route; with TigerBeetle also `ratelimiter_tigerbeetle_batch_events` and `ratelimiter_tigerbeetle_request_duration_seconds`.",
            text("text/plain", "The metrics, in the Prometheus text format (version 0.0.4)."),
        ),
    );
    doc.paths.add_path_operation(
        "/",
        vec![HttpMethod::Get],
        page(
            "limits_page",
            "The live limits page",
            "An HTML page (script included, nothing fetched from elsewhere) showing every limit with a usage bar, available, debt and status, refreshed every second from the admin API.",
            text("text/html", "The page."),
        ),
    );
}

/// Every operation also documents the 405 that its path answers to the other methods.
fn add_method_not_allowed(doc: &mut Document) {
    let answer = ResponseBuilder::new()
        .description(
            "This path was asked with a method it does not list (e.g. `POST /healthz`): `method_not_allowed`.",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .responses
        .insert(METHOD_NOT_ALLOWED.into(), RefOr::T(answer));
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            operation.responses.responses.insert(
                "405".into(),
                RefOr::Ref(Ref::from_response_name(METHOD_NOT_ALLOWED)),
            );
        }
    }
}

/// A type flattened into another (`LimitState` into `LimitInfo`) is rendered as an `allOf`
/// member; a member that forbids additional properties would forbid the other members'
/// properties too, so it is left open (the composed object is what the server sends).
fn open_flattened_parts(doc: &mut Document) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let mut parts = Vec::new();
    for schema in components.schemas.values() {
        if let RefOr::T(Schema::AllOf(all_of)) = schema {
            parts.extend(all_of.items.iter().filter_map(|item| {
                match item {
                    RefOr::Ref(reference) => reference
                        .ref_location
                        .strip_prefix("#/components/schemas/")
                        .map(str::to_string),
                    RefOr::T(_) => None,
                }
            }));
        }
    }
    for name in parts {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&name) {
            object.additional_properties = None;
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The document, serialised once.
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| document_json().map_err(|e| e.to_string()));

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi_document",
    summary = "This OpenAPI 3.1 document",
    responses(
        (status = 200, description = "The document (the same bytes as `docs/openapi.json` in the repository).", body = Object, content_type = "application/json"),
        (status = 500, description = "The document could not be serialised (a defect): `openapi_error`.", body = ErrorBody),
    )
)]
pub(super) async fn serve() -> HttpResponse {
    match DOCUMENT.as_ref() {
        Ok(json) => HttpResponse::Ok()
            .insert_header(ContentType::json())
            .body(json.as_str()),
        Err(e) => HttpResponse::InternalServerError().json(ErrorBody {
            error: "openapi_error".into(),
            message: format!("the OpenAPI document cannot be serialised: {e}"),
        }),
    }
}

/// The `/openapi.json` route, answering 405 to every method but GET.
pub(super) fn resource() -> actix_web::Resource {
    web::resource(OPENAPI_PATH)
        .route(web::get().to(serve))
        .default_service(web::to(server::method_not_allowed))
}
