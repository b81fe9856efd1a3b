//! The small HTTP/1.1 server that the discovery server and a peer's admin
//! listener both run on: blocking sockets, one thread per connection, and
//! the limits that keep slow or hostile clients from starving good ones.
//!
//! - [`head`]: parsing a request head (pure).
//! - [`reply`]: an answer and how it is written.
//! - [`limits`]: connections and request budgets per source address, and
//!   which connection gives way at a cap (pure).
//! - [`service`]: what a server asks of its routes.
//! - [`shared`]: what the accept loop and the connections share.
//! - [`connection`]: one connection's loop, with its deadlines.
//! - [`server`]: the listener, the accept loop and the threads.
//!
//! A route is a [`Service`]: it decides from the head, and asks for the
//! body only when it needs one. `tiny_http`'s server loop is not used: see
//! `docs/discovery.md` ("How the server protects itself") for why.

pub(crate) mod connection;
// Its items are `pub` for the fuzz entry points (`discovery::inspect`).
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub(crate) mod head;
pub(crate) mod limits;
pub(crate) mod reply;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod shared;

pub(crate) use head::RequestHead;
#[cfg(feature = "fuzzing")]
pub use head::{HeadError, MAX_HEADERS, head_len, parse_head};
pub use reply::Reply;
pub(crate) use reply::{JSON, PROMETHEUS_TEXT};
pub(crate) use server::{Accept, HttpServer, bind};
pub(crate) use service::{Begin, Event, Service};
pub(crate) use shared::ServerLimits;
