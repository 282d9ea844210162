//! The labelling page's server. Every request must name this host as the browser reached it
//! (`127.0.0.1:PORT` or `localhost:PORT`: a page elsewhere that points a name of its own at this
//! port is refused) and carry the run's token (`?token=` or the `x-cryoprune-token` header), so
//! neither another web page nor another user of the machine can read or change the labels.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::Session;
use crate::{Error, Result};

const PAGE: &str = include_str!("page.html");

/// Serves `session` on `listener` until the process ends.
pub async fn serve(session: Arc<Session>, listener: tokio::net::TcpListener) -> Result<()> {
    let port = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("the server's address: {e}")))?
        .port();
    let guard = move |State(s): State<Arc<Session>>, req: Request, next: Next| async move {
        match allowed(&s, req.headers(), req.uri().query(), port) {
            Ok(()) => next.run(req).await,
            Err(why) => (StatusCode::FORBIDDEN, why).into_response(),
        }
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/api/gallery", get(gallery))
        .route("/api/label", post(label))
        .route("/api/undo", post(undo))
        .route("/api/save-model", post(save_model))
        .route("/api/clusters", get(clusters).post(make_clusters))
        .route("/api/clusters/{g}/average", get(cluster_average))
        .route("/api/clusters/{g}/label", post(label_group))
        .route("/api/particle/{id}", get(particle))
        .route("/api/micrograph/{m}/tile/{level}/{x}/{y}", get(tile))
        .route("/api/micrograph/{m}/picks", get(micrograph_picks))
        .layer(middleware::from_fn_with_state(session.clone(), guard))
        .with_state(session);
    axum::serve(listener, app)
        .await
        .map_err(|e| Error::Invalid(format!("the web server stopped: {e}")))
}

/// Why a request is refused, if it is.
fn allowed(
    s: &Session,
    headers: &HeaderMap,
    query: Option<&str>,
    port: u16,
) -> std::result::Result<(), &'static str> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !matches!(host, Some(h) if h == format!("127.0.0.1:{port}") || h == format!("localhost:{port}"))
    {
        return Err("refused: this server answers to 127.0.0.1 and localhost only");
    }
    let from_query = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("token="));
    let from_header = headers
        .get("x-cryoprune-token")
        .and_then(|h| h.to_str().ok());
    match from_query.or(from_header) {
        Some(t) if same(t.as_bytes(), s.token.as_bytes()) => Ok(()),
        _ => Err("refused: open the address `cryoprune label` printed, with its token"),
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error as the page shows it.
fn failed(e: Error) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

fn json<T: serde::Serialize>(r: Result<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(e),
    }
}

fn png(r: Result<Vec<u8>>) -> Response {
    match r {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/png")], Body::from(bytes)).into_response(),
        Err(e) => failed(e),
    }
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn state(State(s): State<Arc<Session>>) -> Response {
    Json(s.state()).into_response()
}

#[derive(Deserialize)]
struct GalleryQuery {
    #[serde(default)]
    from: usize,
    #[serde(default = "page_size")]
    count: usize,
    #[serde(default)]
    all: bool,
    /// Only the picks the model predicts as this class.
    predicted: Option<String>,
}

fn page_size() -> usize {
    60
}

async fn gallery(State(s): State<Arc<Session>>, Query(q): Query<GalleryQuery>) -> Response {
    Json(s.gallery(q.from, q.count.min(1000), q.all, q.predicted.as_deref())).into_response()
}

#[derive(Deserialize)]
struct LabelRequest {
    id: usize,
    /// Index of the class; `None` clears the label.
    class: Option<usize>,
}

async fn label(State(s): State<Arc<Session>>, Json(r): Json<LabelRequest>) -> Response {
    json(s.set_label(r.id, r.class).map(|()| s.counts()))
}

async fn undo(State(s): State<Arc<Session>>) -> Response {
    json(
        s.undo()
            .map(|id| serde_json::json!({ "id": id, "counts": s.counts() })),
    )
}

/// Cutting a micrograph's particles reads the micrograph: off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Invalid(format!("the request failed: {e}")))?
}

#[derive(Deserialize, Default)]
struct SaveRequest {
    /// Where to; default beside the labels file.
    dir: Option<std::path::PathBuf>,
}

async fn save_model(State(s): State<Arc<Session>>, r: Option<Json<SaveRequest>>) -> Response {
    let dir = r.unwrap_or_default().0.dir;
    json(blocking(move || s.save_model(dir)).await)
}

async fn clusters(State(s): State<Arc<Session>>) -> Response {
    json(s.clusters_view())
}

#[derive(Deserialize)]
struct ClustersQuery {
    #[serde(default = "groups")]
    k: usize,
}

fn groups() -> usize {
    12
}

async fn make_clusters(State(s): State<Arc<Session>>, Query(q): Query<ClustersQuery>) -> Response {
    json(blocking(move || s.cluster(q.k)).await)
}

async fn cluster_average(State(s): State<Arc<Session>>, Path(g): Path<usize>) -> Response {
    png(s.cluster_average(g))
}

#[derive(Deserialize)]
struct GroupLabel {
    class: usize,
}

async fn label_group(
    State(s): State<Arc<Session>>,
    Path(g): Path<usize>,
    Json(r): Json<GroupLabel>,
) -> Response {
    json(
        s.label_group(g, r.class)
            .map(|n| serde_json::json!({ "labelled": n, "counts": s.counts() })),
    )
}

async fn particle(State(s): State<Arc<Session>>, Path(id): Path<usize>) -> Response {
    png(blocking(move || s.particle_png(id)).await)
}

#[derive(Deserialize)]
struct TileQuery {
    /// Low-pass resolution in Å.
    lowpass: Option<f64>,
}

async fn tile(
    State(s): State<Arc<Session>>,
    Path((micrograph, level, x, y)): Path<(usize, usize, usize, usize)>,
    Query(q): Query<TileQuery>,
) -> Response {
    let t = super::TileRequest {
        micrograph,
        level,
        x,
        y,
        lowpass: q.lowpass,
    };
    png(blocking(move || s.tile(t)).await)
}

async fn micrograph_picks(State(s): State<Arc<Session>>, Path(m): Path<usize>) -> Response {
    json(blocking(move || s.micrograph_picks(m)).await)
}
