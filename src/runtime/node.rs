//! A node: one actor, its bounded inports, its routes, and its scheduling state.
//! Every field that changes lives behind the node's own mutex; see `wake.rs` for
//! how nodes wait on each other.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::Value;

use super::actor::{Actor, AwaitRule, Forward};
use super::origin::{Envelope, Receipt, Source};
use super::state::ActorState;
use super::wake::Waits;
use crate::message::Message;

/// A message held back by a full inbox, with where it goes.
pub(crate) struct Pending {
    pub(crate) target: Arc<Node>,
    pub(crate) port: usize,
    pub(crate) envelope: Envelope,
}

/// Messages a node produced that are waiting for room downstream, in order.
pub(crate) type Outbox = VecDeque<Pending>;

/// One connection out of an outport.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) target: Arc<Node>,
    pub(crate) port: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not queued and not running.
    Idle,
    /// Queued on its runner (the pool or its own thread).
    Scheduled,
    /// A thread is running its turn.
    Running,
}

/// Where a node's turns run.
pub(crate) enum Runner {
    Pool,
    /// A thread of its own, rung through a one-slot doorbell.
    Dedicated(Sender<()>),
}

/// The actor and its persistent state; taken out of the node while a turn runs.
pub(crate) struct ActorSlot {
    pub(crate) actor: Box<dyn Actor>,
    pub(crate) state: ActorState,
}

pub(crate) struct InPort {
    pub(crate) name: Arc<str>,
    pub(crate) queue: VecDeque<Envelope>,
    pub(crate) capacity: usize,
}

pub(crate) struct NodeInner {
    pub(crate) ports: Vec<InPort>,
    pub(crate) phase: Phase,
    /// Who this node waits for and who waits for it: changed only by
    /// `wake.rs`, next to the argument that no wake-up is lost.
    pub(crate) waits: Waits,
    pub(crate) slot: Option<ActorSlot>,
    pub(crate) outbox: Outbox,
    /// Threads waiting on `Node::space` for room (external senders, dedicated nodes).
    pub(crate) external_waiters: usize,
    /// A node without inports gets one tick at start.
    pub(crate) source_tick_due: bool,
    /// How long its turns take, smoothed (each new turn weighs a quarter,
    /// so one turn slowed by the machine does not count for much); `None`
    /// before the first. Whether a connection's reader may run the next one
    /// itself (`NetworkConfig::inline_turn_limit`).
    pub(crate) turn_time: Option<Duration>,
    required: Option<Vec<usize>>,
}

pub(crate) struct Node {
    id: usize,
    name: Arc<str>,
    outports: Vec<Arc<str>>,
    accepts_any_inport: bool,
    /// Per outport, its connections. Replaced whole on change (copy on write), so
    /// a delivery holds no lock while it waits for room.
    routes: RwLock<Arc<Vec<Vec<Route>>>>,
    pub(crate) inner: Mutex<NodeInner>,
    /// Signalled when input is taken, for threads waiting for room.
    pub(crate) space: Condvar,
    pub(crate) runner: Runner,
    pub(crate) metadata: Value,
    pub(crate) handle: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) forwarder: Option<Arc<dyn Forward>>,
}

/// Locks a mutex; a poisoned one is still used, since no lock in the runtime is
/// held while actor code runs and our own sections keep their data consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    pub(crate) fn new(
        id: usize,
        name: &str,
        actor: Box<dyn Actor>,
        metadata: Value,
        inbox_capacity: usize,
        runner: Runner,
    ) -> Result<Node, String> {
        let inports: Vec<String> = actor.inports();
        let outports: Vec<Arc<str>> = actor.outports().iter().map(|p| Arc::from(p.as_str())).collect();
        let required = match actor.await_rule() {
            AwaitRule::Any => None,
            AwaitRule::All => Some((0..inports.len()).collect()),
            AwaitRule::Ports(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        inports
                            .iter()
                            .position(|p| p == n)
                            .ok_or_else(|| format!("await rule names {n:?}, which is not an inport"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let capacity = metadata
            .get("inbox_capacity")
            .and_then(Value::as_u64)
            .map_or(inbox_capacity, |c| c as usize)
            .max(1);
        let ports = inports
            .iter()
            .map(|p| InPort {
                capacity: port_capacity(&metadata, p).unwrap_or(capacity),
                name: Arc::from(p.as_str()),
                queue: VecDeque::new(),
            })
            .collect();
        let routes = RwLock::new(Arc::new(vec![Vec::new(); outports.len()]));
        let handle = actor.handle();
        let forwarder = actor.forwarder();
        let accepts_any_inport = actor.accepts_any_inport();
        Ok(Node {
            id,
            name: Arc::from(name),
            outports,
            accepts_any_inport,
            routes,
            inner: Mutex::new(NodeInner {
                source_tick_due: inports.is_empty() && !accepts_any_inport,
                ports,
                phase: Phase::Idle,
                waits: Waits::default(),
                slot: Some(ActorSlot {
                    actor,
                    state: ActorState::default(),
                }),
                outbox: VecDeque::new(),
                external_waiters: 0,
                turn_time: None,
                required,
            }),
            space: Condvar::new(),
            runner,
            metadata,
            handle,
            forwarder,
        })
    }

    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn outport_index(&self, port: &str) -> Option<usize> {
        self.outports.iter().position(|p| &**p == port)
    }

    pub(crate) fn current_routes(&self) -> Arc<Vec<Vec<Route>>> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds a connection from outport `port`; returns false if it exists already.
    pub(crate) fn add_route(&self, port: usize, route: Route) -> bool {
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let existing = &routes[port];
        if existing
            .iter()
            .any(|r| Arc::ptr_eq(&r.target, &route.target) && r.port == route.port)
        {
            return false;
        }
        let mut updated = (**routes).clone();
        updated[port].push(route);
        *routes = Arc::new(updated);
        true
    }

    /// Drops every connection (they hold other nodes; a cycle would never be freed).
    pub(crate) fn clear_routes(&self) {
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *routes = Arc::new(Vec::new());
    }

    pub(crate) fn outport_names(&self) -> Vec<&str> {
        self.outports.iter().map(|p| &**p).collect()
    }

    /// The index of inport `port`, creating it for nodes that accept any inport.
    pub(crate) fn inport_index(&self, port: &str, default_capacity: usize) -> Option<usize> {
        let mut inner = lock(&self.inner);
        if let Some(index) = inner.ports.iter().position(|p| &*p.name == port) {
            return Some(index);
        }
        if !self.accepts_any_inport {
            return None;
        }
        inner.ports.push(InPort {
            name: Arc::from(port),
            queue: VecDeque::new(),
            capacity: port_capacity(&self.metadata, port).unwrap_or(default_capacity),
        });
        Some(inner.ports.len() - 1)
    }

    pub(crate) fn inport_names(&self) -> Vec<String> {
        lock(&self.inner)
            .ports
            .iter()
            .map(|p| p.name.to_string())
            .collect()
    }
}

/// One tick's inputs, their senders, and the receipts to complete after it.
#[derive(Default)]
pub(crate) struct Taken {
    pub(crate) inputs: Vec<(Arc<str>, Message)>,
    pub(crate) sources: Vec<(Arc<str>, Source)>,
    pub(crate) receipts: Vec<Receipt>,
}

/// A per-port capacity from metadata `{"inbox_capacities": {"in": 8}}`.
fn port_capacity(metadata: &Value, port: &str) -> Option<usize> {
    let capacity = metadata.get("inbox_capacities")?.get(port)?.as_u64()?;
    Some((capacity as usize).max(1))
}

impl NodeInner {
    pub(crate) fn has_room(&self, port: usize) -> bool {
        self.ports[port].queue.len() < self.ports[port].capacity
    }

    /// Whether the await rule is met (or the one source tick is due).
    pub(crate) fn fireable(&self) -> bool {
        if self.source_tick_due {
            return true;
        }
        match &self.required {
            None => self.ports.iter().any(|p| !p.queue.is_empty()),
            Some(required) => {
                !required.is_empty() && required.iter().all(|&i| !self.ports[i].queue.is_empty())
            }
        }
    }

    /// Takes one tick's inputs: the oldest message of each port that has one.
    /// Returns whether a port drained down to its low-water mark (half its
    /// capacity), the moment its waiting senders are woken. Senders wait only
    /// on a full port, so every waiter sees this crossing after it started
    /// waiting; waking at half rather than at the first free slot lets a woken
    /// sender deliver a batch instead of one message per wake-up.
    /// Receipts go to `taken`, to be completed once the tick has returned.
    pub(crate) fn take_inputs(&mut self, taken: &mut Taken) -> bool {
        self.source_tick_due = false;
        let mut freed = false;
        for port in &mut self.ports {
            let low_water = port.capacity / 2;
            let before = port.queue.len();
            if let Some(envelope) = port.queue.pop_front() {
                taken.inputs.push((port.name.clone(), envelope.message));
                taken.sources.push((port.name.clone(), envelope.source));
                taken.receipts.extend(envelope.receipt);
                freed |= before > low_water && before - 1 <= low_water;
            }
        }
        freed
    }

    /// Whether the node should be queued now (checked under its lock).
    pub(crate) fn wants_turn(&self) -> bool {
        self.phase == Phase::Idle && !self.waits.is_blocked() && (!self.outbox.is_empty() || self.fireable())
    }
}
