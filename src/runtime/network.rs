//! `Network`: a local graph of actors, its templates, connections and threads.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

use super::actor::{Actor, Threading};
use super::catalog::{self, ActorFactory};
use super::config::NetworkConfig;
use super::error::{RuntimeError, SendError, SendErrorKind};
use super::events::NetworkEvent;
use super::node::{Node, Pending, Route, Runner, lock};
use super::origin::{Envelope, RemoteSend, Room, Source};
use super::scheduler::{self, Job, Shared, WaitError};
use crate::message::Message;

#[derive(Default)]
struct Registry {
    templates: HashMap<String, Arc<ActorFactory>>,
    /// Looked up by every message sent to a node, local or remote; only
    /// this process adds to it, so a fast hasher (Cargo.toml, foldhash).
    nodes: HashMap<String, Arc<Node>, foldhash::fast::RandomState>,
    initial: Vec<(Arc<Node>, usize, Message)>,
}

struct Threads {
    handles: Vec<JoinHandle<()>>,
    /// Dropped at shutdown: wakes every dedicated runner.
    stop_tx: Option<Sender<()>>,
}

struct NetworkInner {
    shared: Arc<Shared>,
    registry: RwLock<Registry>,
    threads: Mutex<Threads>,
    next_node_id: AtomicUsize,
}

/// A local actor graph. Cheap to clone: every clone is a handle to the same
/// network, usable from any thread. `docs/runtime.md` explains the model:
/// bounded inboxes, a worker pool, backpressure that cannot deadlock.
///
/// ```
/// use std::time::Duration;
///
/// use reflow_distributed::runtime::{FnActor, Network, NetworkConfig, RecorderLog};
/// use serde_json::Value;
///
/// let network = Network::new(NetworkConfig::default());
/// let doubler = FnActor::new(&["in"], &["out"], |ctx| {
///     let n = ctx.input("in").and_then(|m| m.as_i64()).unwrap_or(0);
///     ctx.emit("out", n * 2)
/// });
/// network.add_actor("double", Box::new(doubler), Value::Null)?;
/// network.add_node("sink", "recorder", Value::Null)?;
/// network.connect("double", "out", "sink", "in")?;
/// network.start()?;
///
/// network.send_to_actor("double", "in", 21_i64)?;
/// let log = network.node_handle::<RecorderLog>("sink").expect("a recorder");
/// assert!(log.wait_until(Duration::from_secs(10), |records| !records.is_empty()));
/// assert_eq!(log.records()[0].message.as_i64(), Some(42));
/// network.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Network {
    inner: Arc<NetworkInner>,
}

impl Network {
    /// A network with the built-in templates (`recorder`, `passthrough`) registered.
    pub fn new(config: NetworkConfig) -> Network {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let mut registry = Registry::default();
        for (id, factory) in catalog::builtin_templates() {
            registry.templates.insert(id.to_string(), factory);
        }
        Network {
            inner: Arc::new(NetworkInner {
                shared: Arc::new(Shared::new(config, stop_rx)),
                registry: RwLock::new(registry),
                threads: Mutex::new(Threads {
                    handles: Vec::new(),
                    stop_tx: Some(stop_tx),
                }),
                next_node_id: AtomicUsize::new(0),
            }),
        }
    }

    /// The settings this network was made with.
    pub fn config(&self) -> &NetworkConfig {
        &self.inner.shared.config
    }

    /// Registers a template: a factory that makes one actor per node from
    /// the node's metadata. `recorder` and `passthrough` are built in.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::DuplicateTemplate`] when `id` is taken.
    pub fn register_template(
        &self,
        id: &str,
        factory: impl Fn(&Value) -> Box<dyn Actor> + Send + Sync + 'static,
    ) -> Result<(), RuntimeError> {
        let mut registry = self.write_registry();
        if registry.templates.contains_key(id) {
            return Err(RuntimeError::DuplicateTemplate(id.to_string()));
        }
        registry.templates.insert(id.to_string(), Arc::new(factory));
        Ok(())
    }

    /// Adds node `name` made by template `template` with `metadata` as its config.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::UnknownTemplate`], or as [`Network::add_actor`].
    pub fn add_node(&self, name: &str, template: &str, metadata: Value) -> Result<(), RuntimeError> {
        let factory = self
            .read_registry()
            .templates
            .get(template)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownTemplate(template.to_string()))?;
        self.add_actor(name, factory(&metadata), metadata)
    }

    /// Adds node `name` running `actor`. Works before and after `start`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::DuplicateNode`]; [`RuntimeError::InvalidActor`] for an
    /// empty name or an await rule naming a port the actor lacks;
    /// [`RuntimeError::ShutDown`]; [`RuntimeError::Spawn`] when a
    /// dedicated actor's thread cannot start.
    pub fn add_actor(&self, name: &str, actor: Box<dyn Actor>, metadata: Value) -> Result<(), RuntimeError> {
        let shared = &self.inner.shared;
        if shared.is_stopping() {
            return Err(RuntimeError::ShutDown);
        }
        if name.is_empty() {
            return Err(RuntimeError::InvalidActor {
                node: name.to_string(),
                reason: "node names must not be empty".into(),
            });
        }
        let mut registry = self.write_registry();
        if registry.nodes.contains_key(name) {
            return Err(RuntimeError::DuplicateNode(name.to_string()));
        }
        let dedicated = actor.threading() == Threading::Dedicated;
        let (runner, doorbell) = if dedicated {
            let (tx, rx) = crossbeam_channel::bounded(1);
            (Runner::Dedicated(tx), Some(rx))
        } else {
            (Runner::Pool, None)
        };
        let id = self.inner.next_node_id.fetch_add(1, Ordering::Relaxed);
        let node = Node::new(id, name, actor, metadata, shared.config.inbox_capacity, runner)
            .map(Arc::new)
            .map_err(|reason| RuntimeError::InvalidActor {
                node: name.to_string(),
                reason,
            })?;
        if let Some(doorbell) = doorbell {
            let runner_shared = shared.clone();
            let runner_node = node.clone();
            let handle = self.spawn(format!("reflow-actor-{name}"), move || {
                scheduler::dedicated_loop(runner_shared, runner_node, doorbell)
            })?;
            lock(&self.inner.threads).handles.push(handle);
        }
        registry.nodes.insert(name.to_string(), node.clone());
        drop(registry);
        if shared.started.load(Ordering::Acquire) {
            self.activate(&node);
        }
        Ok(())
    }

    /// Whether node `name` exists.
    pub fn has_node(&self, name: &str) -> bool {
        self.read_registry().nodes.contains_key(name)
    }

    /// Names of every node, sorted.
    pub fn node_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read_registry().nodes.keys().cloned().collect();
        names.sort();
        names
    }

    /// The handle node `name`'s actor published (see `Actor::handle`), if it is a `T`.
    pub fn node_handle<T: Any + Send + Sync>(&self, name: &str) -> Option<Arc<T>> {
        let node = self.read_registry().nodes.get(name)?.clone();
        node.handle.clone()?.downcast::<T>().ok()
    }

    /// Connects `from.from_port -> to.to_port`. An outport may feed many inports
    /// (each gets a copy) and an inport may be fed by many outports.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::UnknownNode`] or [`RuntimeError::UnknownPort`] (which
    /// lists the ports the node has).
    pub fn connect(&self, from: &str, from_port: &str, to: &str, to_port: &str) -> Result<(), RuntimeError> {
        let (source, target) = {
            let registry = self.read_registry();
            (self.node(&registry, from)?, self.node(&registry, to)?)
        };
        let out = source
            .outport_index(from_port)
            .ok_or_else(|| RuntimeError::UnknownPort {
                node: from.to_string(),
                port: from_port.to_string(),
                available: source.outport_names().iter().map(|s| s.to_string()).collect(),
            })?;
        let port = self.inport(&target, to_port)?;
        source.add_route(out, Route { target, port });
        Ok(())
    }

    /// Queues `message` for `node.port` when the network starts (at once if it has).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::UnknownNode`] or [`RuntimeError::UnknownPort`];
    /// [`RuntimeError::ShutDown`] when the network has started and the
    /// message cannot be delivered.
    pub fn add_initial(
        &self,
        node: &str,
        port: &str,
        message: impl Into<Message>,
    ) -> Result<(), RuntimeError> {
        let message = message.into();
        let target = self.node(&self.read_registry(), node)?;
        let port_index = self.inport(&target, port)?;
        if self.inner.shared.started.load(Ordering::Acquire) {
            return self
                .send_to_actor(node, port, message)
                .map_err(|_| RuntimeError::ShutDown);
        }
        self.write_registry().initial.push((target, port_index, message));
        Ok(())
    }

    /// Starts the worker pool, queues initial packets and gives sources their tick.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::AlreadyStarted`], [`RuntimeError::ShutDown`], or
    /// [`RuntimeError::Spawn`] when the OS refuses a worker thread.
    pub fn start(&self) -> Result<(), RuntimeError> {
        let shared = &self.inner.shared;
        if shared.is_stopping() {
            return Err(RuntimeError::ShutDown);
        }
        if shared.started.swap(true, Ordering::AcqRel) {
            return Err(RuntimeError::AlreadyStarted);
        }
        for index in 0..shared.config.workers.max(1) {
            let worker_shared = shared.clone();
            let handle = self.spawn(format!("reflow-worker-{index}"), move || {
                scheduler::worker_loop(worker_shared)
            })?;
            lock(&self.inner.threads).handles.push(handle);
        }
        let (nodes, initial) = {
            let mut registry = self.write_registry();
            let nodes: Vec<Arc<Node>> = registry.nodes.values().cloned().collect();
            (nodes, std::mem::take(&mut registry.initial))
        };
        for (node, port, message) in initial {
            // Initial packets are few and chosen by the application: they may
            // exceed a port's capacity rather than be refused.
            lock(&node.inner).ports[port]
                .queue
                .push_back(Envelope::new(message, Source::External));
        }
        for node in &nodes {
            self.activate(node);
        }
        shared.events.publish(NetworkEvent::Started);
        log::debug!("network started with {} nodes", nodes.len());
        Ok(())
    }

    fn activate(&self, node: &Arc<Node>) {
        let shared = &self.inner.shared;
        shared.events.publish(NetworkEvent::ActorStarted {
            node: node.name().to_string(),
        });
        let ready = scheduler::schedule_locked(shared, node, &mut lock(&node.inner));
        ready.run(shared);
    }

    /// Delivers `message` to `node.port`, waiting up to the configured
    /// `send_timeout` for room in a full inbox.
    ///
    /// # Errors
    ///
    /// A [`SendError`] that hands the message back: unknown node or port,
    /// inbox still full after the wait ([`SendError::is_full`]), or the
    /// network shutting down.
    pub fn send_to_actor(
        &self,
        node: &str,
        port: &str,
        message: impl Into<Message>,
    ) -> Result<(), SendError> {
        let timeout = self.inner.shared.config.send_timeout;
        self.send_to_actor_timeout(node, port, message, timeout)
    }

    /// Delivers `message` to `node.port`, waiting up to `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Network::send_to_actor`].
    pub fn send_to_actor_timeout(
        &self,
        node: &str,
        port: &str,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.send_external(node, port, message.into(), timeout)
    }

    /// Delivers `message` to `node.port` only if there is room now.
    ///
    /// # Errors
    ///
    /// As [`Network::send_to_actor`]; a full inbox fails at once.
    pub fn try_send_to_actor(
        &self,
        node: &str,
        port: &str,
        message: impl Into<Message>,
    ) -> Result<(), SendError> {
        self.send_external(node, port, message.into(), Duration::ZERO)
    }

    fn send_external(
        &self,
        node: &str,
        port: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.send_enveloped(
            node,
            port,
            Envelope::new(message, Source::External),
            Room::Wait(timeout),
            false,
        )
    }

    /// Delivers a message that came over the bridge, with its sender and
    /// receipt (`envelope`). With [`Room::Overfill`] it never waits.
    /// `here_stack`: the calling thread's stack in bytes when it may run the
    /// target's turn itself (a connection's reader,
    /// `NetworkConfig::inline_turn_limit`); it does only with at least
    /// `thread_stack_bytes`, the stack the turn would have on a worker.
    pub(crate) fn deliver_inbound(
        &self,
        node: &str,
        port: &str,
        envelope: Envelope,
        room: Room,
        here_stack: Option<usize>,
    ) -> Result<(), SendError> {
        let run_here = here_stack.is_some_and(|stack| stack >= self.inner.shared.config.thread_stack_bytes);
        self.send_enveloped(node, port, envelope, room, run_here)
    }

    /// Lets actors reach other networks (`ActorContext::send_to_remote_actor`,
    /// `reply`); set once, by the distributed layer.
    pub(crate) fn set_remote(&self, remote: Arc<dyn RemoteSend>) {
        let _ = self.inner.shared.remote.set(remote);
    }

    fn send_enveloped(
        &self,
        node: &str,
        port: &str,
        envelope: Envelope,
        room: Room,
        run_here: bool,
    ) -> Result<(), SendError> {
        let hand_over = |ready: scheduler::Ready| {
            if run_here {
                ready.run_here_if_short(&self.inner.shared);
            } else {
                ready.run(&self.inner.shared);
            }
        };
        let message = envelope.message;
        let (source, receipt) = (envelope.source, envelope.receipt);
        let shared = &self.inner.shared;
        if shared.is_external_closed() {
            return Err(SendError::new(SendErrorKind::ShuttingDown, message));
        }
        let Some(target) = self.read_registry().nodes.get(node).cloned() else {
            return Err(SendError::new(
                SendErrorKind::UnknownNode(node.to_string()),
                message,
            ));
        };
        let Some(port_index) = target.inport_index(port, shared.config.inbox_capacity) else {
            let kind = SendErrorKind::UnknownPort {
                node: node.to_string(),
                port: port.to_string(),
            };
            return Err(SendError::new(kind, message));
        };
        let envelope = Envelope {
            message,
            source,
            receipt,
        };
        let timeout = match room {
            Room::Wait(timeout) => {
                // A turn this thread put off may be the one that makes room.
                scheduler::run_deferred();
                timeout
            }
            Room::Overfill => {
                let mut inner = lock(&target.inner);
                let ready = scheduler::accept_locked(shared, &target, &mut inner, port_index, envelope);
                drop(inner);
                hand_over(ready);
                return Ok(());
            }
        };
        let pending = Pending {
            target,
            port: port_index,
            envelope,
        };
        let ready = scheduler::wait_for_room(shared, pending, Some(timeout), true).map_err(|e| match e {
            WaitError::Full(message) => {
                let kind = SendErrorKind::Full {
                    node: node.to_string(),
                    port: port.to_string(),
                    waited: timeout,
                };
                SendError::new(kind, message)
            }
            WaitError::Stopping(message) => SendError::new(SendErrorKind::ShuttingDown, message),
        })?;
        hand_over(ready);
        Ok(())
    }

    /// A new receiver of this network's events (bounded; a slow reader misses events).
    pub fn events(&self) -> Receiver<NetworkEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Whether no node is queued or running right now.
    pub fn is_idle(&self) -> bool {
        self.inner.shared.is_idle()
    }

    /// Whether `shutdown()` has begun.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shared.is_stopping()
    }

    /// Refuses further sends from outside the network (`send_to_actor` and
    /// friends fail with `ShuttingDown`) and wakes senders waiting for room,
    /// while nodes keep running. A first step of an orderly shutdown: it lets a
    /// thread blocked feeding the network (a bridge reader) go at once.
    pub fn close_external_input(&self) {
        self.inner.shared.close_external();
        self.inner.notify_all_waiters();
    }

    /// Stops every thread the network started and returns once they are joined.
    /// Messages still queued are dropped. Safe to call more than once and from
    /// any handle; called from one of the network's own threads it does not
    /// wait for that thread.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    fn spawn(
        &self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<JoinHandle<()>, RuntimeError> {
        std::thread::Builder::new()
            .name(name)
            .stack_size(self.inner.shared.config.thread_stack_bytes)
            .spawn(body)
            .map_err(RuntimeError::Spawn)
    }

    fn node(&self, registry: &Registry, name: &str) -> Result<Arc<Node>, RuntimeError> {
        registry
            .nodes
            .get(name)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownNode(name.to_string()))
    }

    fn inport(&self, node: &Node, port: &str) -> Result<usize, RuntimeError> {
        node.inport_index(port, self.inner.shared.config.inbox_capacity)
            .ok_or_else(|| RuntimeError::UnknownPort {
                node: node.name().to_string(),
                port: port.to_string(),
                available: node.inport_names(),
            })
    }

    fn read_registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_registry(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl NetworkInner {
    fn nodes(&self) -> Vec<Arc<Node>> {
        let registry = self
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        registry.nodes.values().cloned().collect()
    }

    fn notify_all_waiters(&self) {
        for node in self.nodes() {
            // Take the lock so a waiter between its check and its wait cannot miss this.
            drop(lock(&node.inner));
            node.space.notify_all();
        }
    }

    fn shutdown(&self) {
        let shared = &self.shared;
        if !shared.begin_stopping() {
            return;
        }
        shared.events.publish(NetworkEvent::ShuttingDown);
        let handles = {
            let mut threads = lock(&self.threads);
            threads.stop_tx = None;
            std::mem::take(&mut threads.handles)
        };
        for _ in 0..handles.len() {
            let _ = shared.ready_tx.send(Job::Stop);
        }
        self.notify_all_waiters();
        let me = std::thread::current().id();
        for handle in handles {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
        for node in self.nodes() {
            node.clear_routes();
        }
        shared.events.publish(NetworkEvent::Shutdown);
        shared.events.close();
        log::debug!("network shut down");
    }
}

impl Drop for NetworkInner {
    /// The last handle gone: the network shuts down as `shutdown` does, so its
    /// threads are joined even when nobody called it.
    fn drop(&mut self) {
        self.shutdown();
    }
}
