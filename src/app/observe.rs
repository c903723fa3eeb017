//! What the application reports about each request, as one layer around it: the response
//! counters and the in-flight gauge (`ops::metrics`), and the access line (`ops::access_log`),
//! written when the response body ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use ipnet::IpNet;

use crate::ops::access_log::{self, Pending};
use crate::ops::metrics::{Handling, METRICS};
use crate::ops::ClientAddr;

/// Adds metrics and the access log to a service; `trusted_proxies` may name the client.
#[derive(Clone, Default)]
pub struct ObserveLayer {
    pub trusted_proxies: Arc<[IpNet]>,
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    trusted_proxies: Arc<[IpNet]>,
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
        let peer = || crate::ops::peer().map(|p| p.ip());
        // Behind a trusted proxy, the client it forwarded for, for every log line of the
        // request (nothing to do, and nothing spent, without trusted proxies).
        let mut req = req;
        let mut forwarded = None;
        if !self.trusted_proxies.is_empty() {
            let socket = peer();
            let client = access_log::client(socket, req.headers(), &self.trusted_proxies);
            if let Some(c) = client.filter(|c| Some(*c) != socket) {
                req.extensions_mut().insert(ClientAddr(c));
            }
            forwarded = Some(client);
        }
        let log = access_log::begin(&req, || forwarded.unwrap_or_else(peer));
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
