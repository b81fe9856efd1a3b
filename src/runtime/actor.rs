//! The `Actor` trait and the context an actor sees during one tick.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::node::{Node, Outbox};
use super::origin::{Origin, Source};
use super::scheduler::{self, Shared};
use super::state::ActorState;
use crate::message::Message;

/// When a node fires.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AwaitRule {
    /// On any input (the default): a tick takes the oldest message of every
    /// inport that has one.
    #[default]
    Any,
    /// Only when every inport has a message; a tick takes one from each.
    All,
    /// Only when each of these inports has a message; a tick takes one from each
    /// of them and from any other inport that has one.
    Ports(Vec<String>),
}

/// Where a node's ticks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Threading {
    /// On the network's shared worker pool (the default). `run` must not block.
    #[default]
    Pool,
    /// On a thread of its own, for actors that block or loop (sources reading a
    /// device, say). `ActorContext::send` waits for room downstream instead of
    /// queueing, and `run` should return once `is_shutting_down()` is true.
    Dedicated,
}

/// An error an actor reports from a tick. The node keeps serving later ticks.
#[derive(Clone, PartialEq, Eq)]
pub struct ActorError(String);

impl ActorError {
    /// An error with this text; it is logged and sent as
    /// [`NetworkEvent::ActorFailed`](super::NetworkEvent::ActorFailed).
    pub fn new(text: impl Into<String>) -> Self {
        ActorError(text.into())
    }
}

impl fmt::Display for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorError({:?})", self.0)
    }
}

impl std::error::Error for ActorError {}

impl From<String> for ActorError {
    fn from(text: String) -> Self {
        ActorError(text)
    }
}

impl From<&str> for ActorError {
    fn from(text: &str) -> Self {
        ActorError(text.to_string())
    }
}

/// A synchronous actor. One node runs one actor; its ticks never overlap, so
/// `&mut self` needs no lock.
pub trait Actor: Send + 'static {
    /// Names of the ports messages arrive on.
    fn inports(&self) -> Vec<String>;

    /// Names of the ports the actor emits on.
    fn outports(&self) -> Vec<String>;

    /// When the node fires; default [`AwaitRule::Any`].
    fn await_rule(&self) -> AwaitRule {
        AwaitRule::Any
    }

    /// Where its ticks run; default [`Threading::Pool`].
    fn threading(&self) -> Threading {
        Threading::Pool
    }

    /// Whether a message may arrive on a port not listed by `inports` (the port
    /// is then created on first use). Proxies for remote actors use this.
    fn accepts_any_inport(&self) -> bool {
        false
    }

    /// An object the application may fetch with `Network::node_handle` (a
    /// recorder's history, a counter…). Asked once, when the node is added.
    fn handle(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }

    /// A way to pass messages on without a tick, for actors that only relay
    /// them elsewhere (proxies). When the node is idle with nothing queued, a
    /// message for it goes to the forwarder from the sender's thread, saving a
    /// hand-off; if the forwarder gives the message back, it is queued for a
    /// tick as usual. Asked once, when the node is added.
    fn forwarder(&self) -> Option<Arc<dyn Forward>> {
        None
    }

    /// One tick. An actor with no inports gets exactly one tick, at start.
    ///
    /// # Errors
    ///
    /// Whatever the actor reports. The error (or a panic) is logged and
    /// sent as [`NetworkEvent::ActorFailed`](super::NetworkEvent::ActorFailed);
    /// the node keeps serving later ticks.
    fn run(&mut self, ctx: &mut ActorContext<'_>) -> Result<(), ActorError>;
}

/// Passes a message on without blocking; see [`Actor::forwarder`].
pub trait Forward: Send + Sync {
    /// Forwards `message` that arrived on `port` from `origin`, or gives it
    /// back when it cannot be passed on right now (the message is then queued
    /// for a tick). Must not block: it runs on the sender's thread, possibly a
    /// pool worker.
    ///
    /// # Errors
    ///
    /// The message itself, handed back, when it cannot be passed on now.
    fn try_forward(&self, port: &str, message: Message, origin: &Origin) -> Result<(), Message>;
}

/// What an actor sees during one tick.
pub struct ActorContext<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) node: &'a Arc<Node>,
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) inputs: Vec<(Arc<str>, Message)>,
    /// Who sent each input, by port; kept when an input is taken.
    pub(crate) sources: Vec<(Arc<str>, Source)>,
    pub(crate) emitted: Vec<(usize, Message)>,
    pub(crate) state: &'a mut ActorState,
    pub(crate) config: &'a Value,
}

impl<'a> ActorContext<'a> {
    /// The node's name in its network.
    pub fn node(&self) -> &str {
        self.node.name()
    }

    /// This tick's message on `port`, if one arrived.
    pub fn input(&self, port: &str) -> Option<&Message> {
        self.inputs.iter().find(|(p, _)| &**p == port).map(|(_, m)| m)
    }

    /// Takes this tick's message on `port` out of the context (no clone).
    pub fn take_input(&mut self, port: &str) -> Option<Message> {
        let index = self.inputs.iter().position(|(p, _)| &**p == port)?;
        Some(self.inputs.swap_remove(index).1)
    }

    /// Every (port, message) of this tick, in port order.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, &Message)> {
        self.inputs.iter().map(|(p, m)| (&**p, m))
    }

    /// Queues `message` on `port`; it is delivered when the tick ends.
    ///
    /// # Errors
    ///
    /// An [`ActorError`] naming the outports when the actor has no outport `port`.
    pub fn emit(&mut self, port: &str, message: impl Into<Message>) -> Result<(), ActorError> {
        let index = self.outport_index(port)?;
        self.emitted.push((index, message.into()));
        Ok(())
    }

    /// Delivers `message` on `port` now, before the tick ends. On the pool, a
    /// full downstream inbox keeps the message (and what follows) until there is
    /// room; on a dedicated thread the call waits for room. Fails only for an
    /// unknown port or when the network is shutting down.
    ///
    /// # Errors
    ///
    /// An [`ActorError`] for an unknown outport, or when the network is
    /// shutting down.
    pub fn send(&mut self, port: &str, message: impl Into<Message>) -> Result<(), ActorError> {
        let index = self.outport_index(port)?;
        scheduler::deliver(self.shared, self.node, self.outbox, index, message.into())
            .map_err(|_| ActorError::new("network is shutting down"))
    }

    /// Where this tick's message on `port` came from: the application, a
    /// node of this network, or an actor of another network.
    pub fn origin(&self, port: &str) -> Option<Origin> {
        self.source(port).map(Source::origin)
    }

    /// Answers this tick's message on `port`: sends `message` to port
    /// `reply_port` of whoever sent it. A local sender gets it with the same
    /// backpressure as [`ActorContext::send`]; a remote one over the bridge,
    /// with no proxy registered for it (see
    /// [`ActorContext::send_to_remote_actor`] for when that waits).
    ///
    /// # Errors
    /// No message on `port` this tick; a sender outside the graph (nothing
    /// to answer); a local sender without a `reply_port` inport; the
    /// network shutting down; for a remote sender, the bridge's reason.
    pub fn reply(
        &mut self,
        port: &str,
        reply_port: &str,
        message: impl Into<Message>,
    ) -> Result<(), ActorError> {
        let source = self
            .source(port)
            .cloned()
            .ok_or_else(|| ActorError(format!("no message arrived on port {port:?} this tick")))?;
        match source {
            Source::External => Err(ActorError(format!(
                "the message on port {port:?} came from outside the graph: there is no one to reply to"
            ))),
            Source::Node(node) => {
                let target = node
                    .upgrade()
                    .ok_or_else(|| ActorError::new("the sender of this message was removed"))?;
                let index = target
                    .inport_index(reply_port, self.shared.config.inbox_capacity)
                    .ok_or_else(|| {
                        ActorError(format!(
                            "node {} has no inport {reply_port:?} to reply to",
                            target.name()
                        ))
                    })?;
                scheduler::deliver_to(self.shared, self.node, self.outbox, target, index, message.into())
                    .map_err(|_| ActorError::new("network is shutting down"))
            }
            Source::Remote(remote) => {
                self.send_to_remote_actor(&remote.network, &remote.actor, reply_port, message)
            }
        }
    }

    /// Sends `message` to `actor.port` in `network` over the bridge, with
    /// this node as the sender (so the remote actor can reply). On the pool
    /// it does not wait: a full connection queue or credit window is an
    /// error; a [`Threading::Dedicated`] node waits up to the network's
    /// `send_timeout`.
    ///
    /// # Errors
    /// This network is not part of a distributed network; no connection to
    /// `network`; a full queue or window; the message's size or kind.
    pub fn send_to_remote_actor(
        &mut self,
        network: &str,
        actor: &str,
        port: &str,
        message: impl Into<Message>,
    ) -> Result<(), ActorError> {
        let remote = self
            .shared
            .remote
            .get()
            .ok_or_else(|| ActorError::new("this network is not linked to other networks"))?;
        let wait = matches!(self.node.runner, super::node::Runner::Dedicated(_));
        remote
            .send_remote(self.node.name(), network, actor, port, message.into(), wait)
            .map_err(|(why, _message)| ActorError(why))
    }

    fn source(&self, port: &str) -> Option<&Source> {
        self.sources.iter().find(|(p, _)| &**p == port).map(|(_, s)| s)
    }

    /// State that persists across this node's ticks.
    pub fn state(&mut self) -> &mut Map<String, Value> {
        &mut self.state.values
    }

    /// Inserts or replaces `key` in the node's pool `pool`.
    pub fn pool_upsert(&mut self, pool: &str, key: &str, value: Value) {
        self.state.pool_upsert(pool, key, value);
    }

    /// The value of `key` in the node's pool `pool`, if any.
    pub fn pool_get(&self, pool: &str, key: &str) -> Option<&Value> {
        self.state.pool_get(pool, key)
    }

    /// Removes `key` from pool `pool` and returns its value.
    pub fn pool_remove(&mut self, pool: &str, key: &str) -> Option<Value> {
        self.state.pool_remove(pool, key)
    }

    /// How many keys pool `pool` holds.
    pub fn pool_count(&self, pool: &str) -> usize {
        self.state.pool_count(pool)
    }

    /// Empties pool `pool`.
    pub fn pool_clear(&mut self, pool: &str) {
        self.state.pool_clear(pool);
    }

    /// Every (key, value) of pool `pool`, in key order.
    pub fn pool_entries(&self, pool: &str) -> Vec<(String, Value)> {
        self.state.pool_entries(pool)
    }

    /// The metadata given when the node was added.
    pub fn config(&self) -> &Value {
        self.config
    }

    /// True once the network has begun shutting down; long-running ticks should return.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_stopping()
    }

    fn outport_index(&self, port: &str) -> Result<usize, ActorError> {
        self.node.outport_index(port).ok_or_else(|| {
            ActorError(format!(
                "node {} has no outport {port:?} (outports: {})",
                self.node.name(),
                self.node.outport_names().join(", ")
            ))
        })
    }
}

type TickFn = dyn FnMut(&mut ActorContext<'_>) -> Result<(), ActorError> + Send;

/// An actor made from a closure, for small actors and tests.
///
/// ```
/// use reflow_distributed::runtime::FnActor;
/// let doubler = FnActor::new(&["in"], &["out"], |ctx| {
///     let n = ctx.input("in").and_then(|m| m.as_i64()).unwrap_or(0);
///     ctx.emit("out", n * 2)
/// });
/// # let _ = doubler;
/// ```
pub struct FnActor {
    inports: Vec<String>,
    outports: Vec<String>,
    await_rule: AwaitRule,
    threading: Threading,
    tick: Box<TickFn>,
}

impl FnActor {
    /// An actor with these ports whose tick is `tick`; it fires on any
    /// input ([`AwaitRule::Any`]) on the worker pool ([`Threading::Pool`]).
    pub fn new(
        inports: &[&str],
        outports: &[&str],
        tick: impl FnMut(&mut ActorContext<'_>) -> Result<(), ActorError> + Send + 'static,
    ) -> Self {
        FnActor {
            inports: inports.iter().map(|p| p.to_string()).collect(),
            outports: outports.iter().map(|p| p.to_string()).collect(),
            await_rule: AwaitRule::Any,
            threading: Threading::Pool,
            tick: Box::new(tick),
        }
    }

    /// The same actor with another [`AwaitRule`].
    pub fn with_await_rule(mut self, rule: AwaitRule) -> Self {
        self.await_rule = rule;
        self
    }

    /// The same actor with another [`Threading`].
    pub fn with_threading(mut self, threading: Threading) -> Self {
        self.threading = threading;
        self
    }
}

impl Actor for FnActor {
    fn inports(&self) -> Vec<String> {
        self.inports.clone()
    }

    fn outports(&self) -> Vec<String> {
        self.outports.clone()
    }

    fn await_rule(&self) -> AwaitRule {
        self.await_rule.clone()
    }

    fn threading(&self) -> Threading {
        self.threading
    }

    fn run(&mut self, ctx: &mut ActorContext<'_>) -> Result<(), ActorError> {
        (self.tick)(ctx)
    }
}
