//! What the application reports about each request, as one layer around it: the response
//! counters and the in-flight gauge (`ops::metrics`), and the access line (`ops::access_log`),
//! written when the response body ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};

use crate::ops::access_log::{self, Pending};
use crate::ops::metrics::{Handling, METRICS};

/// Adds metrics and the access log to a service.
#[derive(Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S> tower::Service<Request<Body>> for Observe<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let handling = METRICS.handling();
        let log = access_log::begin(&req);
        ObserveFuture {
            inner: self.inner.call(req),
            log,
            handling: Some(handling),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        log: Option<Pending>,
        handling: Option<Handling>,
    }
}

impl<F, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx))?;
        this.handling.take();
        METRICS.response(resp.status());
        Poll::Ready(Ok(access_log::finish(this.log.take(), resp)))
    }
}
