//! CORS as a layer around the whole application (files and lab alike), with the rules of
//! `http::cors`. Ours rather than tower-http's `CorsLayer`, which answers every `OPTIONS` as a
//! preflight, adds headers for disallowed origins and replaces an existing `Vary`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{header, HeaderValue, Request, Response};

use crate::http::cors::Cors;
use crate::http::response::with_headers;

/// Adds CORS to a service.
#[derive(Clone)]
pub struct CorsLayer(pub Arc<Cors>);

impl<S> tower::Layer<S> for CorsLayer {
    type Service = WithCors<S>;
    fn layer(&self, inner: S) -> WithCors<S> {
        WithCors {
            inner,
            cors: self.0.clone(),
        }
    }
}

/// A service with CORS: a preflight from an allowed origin is answered here, and every other
/// response gets the CORS headers for the request's origin, whatever its status.
#[derive(Clone)]
pub struct WithCors<S> {
    inner: S,
    cors: Arc<Cors>,
}

impl<S, B> tower::Service<Request<B>> for WithCors<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some((status, h)) = self.cors.preflight(req.method(), req.headers()) {
            return CorsFuture::Preflight {
                resp: Some(with_headers(status, h, Body::empty())),
            };
        }
        let origin = req.headers().get(header::ORIGIN).cloned();
        CorsFuture::Inner {
            inner: self.inner.call(req),
            cors: self.cors.clone(),
            origin,
        }
    }
}

pin_project_lite::pin_project! {
    #[project = CorsProj]
    pub enum CorsFuture<F> {
        Preflight { resp: Option<Response<Body>> },
        Inner { #[pin] inner: F, cors: Arc<Cors>, origin: Option<HeaderValue> },
    }
}

impl<F, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CorsProj::Preflight { resp } => {
                Poll::Ready(Ok(resp.take().expect("polled after completion")))
            }
            CorsProj::Inner {
                inner,
                cors,
                origin,
            } => {
                let mut resp = std::task::ready!(inner.poll(cx))?;
                cors.decorate(origin.as_ref(), resp.headers_mut());
                Poll::Ready(Ok(resp))
            }
        }
    }
}
