//! What a server built on [`HttpServer`](super::HttpServer) asks of its
//! routes: a [`Service`] decides from a request head and counts
//! [`Event`]s.

use std::net::SocketAddr;

use super::head::RequestHead;
use super::reply::Reply;

/// What makes the answer from a body once it is read.
pub(crate) type Finish = Box<dyn FnOnce(&[u8]) -> Reply + Send>;

/// What a service makes of a request head.
pub(crate) enum Begin {
    /// Answer with this; a body, if any, is not needed (it is discarded).
    Respond(Reply),
    /// Read a body of at most `limit` bytes (a larger declared length gets
    /// 413 unread), then answer with what `finish` makes of it.
    ReadBody { limit: usize, finish: Finish },
}

/// Something a service may want to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A response with this status was sent (or attempted).
    Response(u16),
    /// `accept()` failed.
    AcceptError,
    /// A new connection was turned away (every candidate to give way was busy).
    Refused,
    /// A connection was closed to make room for a new one.
    Evicted,
    /// A request was answered 429: its source spent its request budget.
    RateLimited,
    /// Connections open now.
    Open(usize),
}

/// The routes a server answers, and what it counts.
pub(crate) trait Service: Send + Sync + 'static {
    /// Decides from the head, before any body byte is read. `client` is the
    /// connection's remote address.
    fn begin(&self, head: &RequestHead, client: SocketAddr) -> Begin;

    /// Counts an event (metrics). Default: nothing.
    fn observe(&self, _event: Event) {}
}
