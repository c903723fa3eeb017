//! A handler's panic (a bug) becomes a 500 for that request; the connection and the server
//! carry on. Ours rather than tower-http's `CatchPanic`, which boxes every response body
//! (`UnsyncBoxBody`): two more dynamic calls per frame of every download.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::CatchUnwind;
use futures_util::FutureExt;
use http::{Request, Response};

/// Turns panics of the wrapped service (in `call` or in its future) into `on_panic()`.
#[derive(Clone, Copy)]
pub struct CatchPanicLayer {
    pub on_panic: fn(Box<dyn Any + Send>) -> Response<Body>,
}

impl<S> tower::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;
    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic {
            inner,
            on_panic: self.on_panic,
        }
    }
}

#[derive(Clone)]
pub struct CatchPanic<S> {
    inner: S,
    on_panic: fn(Box<dyn Any + Send>) -> Response<Body>,
}

impl<S, B> tower::Service<Request<B>> for CatchPanic<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = PanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let on_panic = self.on_panic;
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => PanicFuture::Running {
                future: AssertUnwindSafe(future).catch_unwind(),
                on_panic,
            },
            Err(panic) => PanicFuture::Panicked {
                resp: Some(on_panic(panic)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = PanicProj]
    pub enum PanicFuture<F> {
        Running { #[pin] future: CatchUnwind<AssertUnwindSafe<F>>, on_panic: fn(Box<dyn Any + Send>) -> Response<Body> },
        Panicked { resp: Option<Response<Body>> },
    }
}

impl<F, E> Future for PanicFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PanicProj::Running { future, on_panic } => {
                Poll::Ready(match std::task::ready!(future.poll(cx)) {
                    Ok(result) => result,
                    Err(panic) => Ok(on_panic(panic)),
                })
            }
            PanicProj::Panicked { resp } => {
                Poll::Ready(Ok(resp.take().expect("polled after completion")))
            }
        }
    }
}
