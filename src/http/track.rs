//! The one middleware around every route: request metrics (count and latency
//! by route, method and status) around one gate: nothing under `/v1` is
//! served until the engine has loaded its state (503 `not_ready`). A `/v1`
//! answer that sets no `Cache-Control` leaves as `private, no-store`.
//! Durability is not decided here: every engine write returns once it is
//! as durable as the mode promises, and its handler renders `not_durable`.
//!
//! Written as a plain tower service with its own future rather than
//! `axum::middleware::from_fn`, which clones the inner service and boxes a
//! future per request: the common path here allocates nothing.
//!
//! A response is measured when its body ends, not when its head is ready:
//! a streamed body (feeds, live streams) is wrapped so its duration and
//! bytes cover the whole stream, whatever the route. A body whose size is
//! known is already complete in memory, so it is measured at once and not
//! wrapped (wrapping boxes the body: one allocation, kept off the hot path).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use super::AppState;
use super::error::ApiError;
use super::error_codes::Code;

#[derive(Clone)]
pub struct TrackLayer {
    pub state: Arc<AppState>,
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    state: Arc<AppState>,
}

/// What the metrics need once the response is there.
pub struct Measure {
    state: Arc<AppState>,
    started: Instant,
    route: Option<MatchedPath>,
    method: Method,
    /// Under `/v1`: the answer is private unless it says otherwise.
    api: bool,
}

impl Measure {
    fn record(self, status: u16, body_bytes: u64) {
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        self.state.request_metrics.record(
            route,
            &self.method,
            status,
            self.started.elapsed().as_secs_f64(),
            body_bytes,
        );
    }

    /// Records a response whose body is in memory now; wraps a streamed one
    /// to record when its body ends (or is dropped: the client went away).
    fn finish(self, mut response: Response) -> Response {
        if self.api {
            private_unless_said(&mut response);
        }
        let status = response.status().as_u16();
        if let Some(bytes) = response.body().size_hint().exact() {
            self.record(status, bytes);
            return response;
        }
        response.map(|inner| {
            Body::new(MeasuredBody {
                inner,
                measure: Some(self),
                status,
                bytes: 0,
            })
        })
    }
}

/// `Cache-Control: private, no-store` on an API answer that sets none:
/// what a secret key reads must not sit in a shared cache.
pub(crate) fn private_unless_said(response: &mut Response) {
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
}

/// A streamed response body that records its request's metrics when it ends.
struct MeasuredBody {
    inner: Body,
    /// Taken when recorded, so a request is recorded once.
    measure: Option<Measure>,
    status: u16,
    /// Data bytes passed on so far.
    bytes: u64,
}

impl MeasuredBody {
    fn record(&mut self) {
        if let Some(measure) = self.measure.take() {
            measure.record(self.status, self.bytes);
        }
    }
}

impl HttpBody for MeasuredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.record(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// hyper stops polling once `is_end_stream` says so, and drops the body when
/// the client disconnects mid-stream: either way the request is recorded
/// here, with the bytes passed on until then.
impl Drop for MeasuredBody {
    fn drop(&mut self) {
        self.record();
    }
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Future<Output = Result<Response, Infallible>> + Send + Unpin + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> TrackFuture<S::Future> {
        let api = request.uri().path().starts_with("/v1/");
        let measure = Measure {
            state: Arc::clone(&self.state),
            started: Instant::now(),
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: request.method().clone(),
            api,
        };
        if api && !self.state.engine.is_ready() {
            let response = ApiError::new(
                Code::NotReady,
                "the engine is loading its state; retry shortly",
            )
            .into_response();
            return TrackFuture::Answered(Some((response, measure)));
        }
        TrackFuture::Inner(self.inner.call(request), Some(measure))
    }
}

pub enum TrackFuture<F> {
    /// The route's own future; the measure is taken when it completes.
    Inner(F, Option<Measure>),
    /// Answered by the gate without calling the route.
    Answered(Option<(Response, Measure)>),
}

impl<F> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            TrackFuture::Inner(inner, measure) => {
                let Poll::Ready(Ok(response)) = Pin::new(inner).poll(cx) else {
                    return Poll::Pending;
                };
                Poll::Ready(Ok(match measure.take() {
                    Some(measure) => measure.finish(response),
                    None => response,
                }))
            }
            TrackFuture::Answered(answer) => match answer.take() {
                Some((response, measure)) => Poll::Ready(Ok(measure.finish(response))),
                // Polled again after completion: a caller bug; answer, don't panic.
                None => Poll::Ready(Ok(
                    ApiError::new(Code::Internal, "response already taken").into_response()
                )),
            },
        }
    }
}
