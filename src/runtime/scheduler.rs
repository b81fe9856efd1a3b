//! Running nodes: the worker pool, dedicated runners, one node's turn, and
//! delivery between nodes. Blocking a sender on a full inbox and waking it
//! are `wake.rs`'s, with the rules that make them safe.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use super::actor::{ActorContext, ActorError};
use super::config::NetworkConfig;
use super::events::{EventBus, NetworkEvent};
use super::node::{Node, NodeInner, Outbox, Pending, Phase, Runner, Taken, lock};
use super::origin::{Envelope, RemoteSend, Settlement, Source};
use super::wake::{self, WaitFor};
use crate::message::Message;

/// Work for a pool worker.
pub(crate) enum Job {
    Run(Arc<Node>),
    Stop,
}

/// State shared by a network's handles and threads.
pub(crate) struct Shared {
    pub(crate) config: NetworkConfig,
    pub(crate) started: AtomicBool,
    stopping: AtomicBool,
    /// Set by `Network::close_external_input`: senders from outside the
    /// network are refused (and woken) while nodes keep running.
    external_closed: AtomicBool,
    pub(crate) ready_tx: Sender<Job>,
    pub(crate) ready_rx: Receiver<Job>,
    pub(crate) wait_for: WaitFor,
    pub(crate) events: EventBus,
    /// Nodes queued or running; the network is idle when it drops to zero.
    active: AtomicUsize,
    /// Never sent on: dropping the sender wakes every dedicated runner at shutdown.
    pub(crate) stop_rx: Receiver<()>,
    /// How actors reach other networks; set by the distributed layer.
    pub(crate) remote: std::sync::OnceLock<Arc<dyn RemoteSend>>,
}

impl Shared {
    pub(crate) fn new(config: NetworkConfig, stop_rx: Receiver<()>) -> Shared {
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        Shared {
            events: EventBus::new(config.event_capacity),
            config,
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            external_closed: AtomicBool::new(false),
            ready_tx,
            ready_rx,
            wait_for: WaitFor::default(),
            active: AtomicUsize::new(0),
            stop_rx,
            remote: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn close_external(&self) {
        self.external_closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_external_closed(&self) -> bool {
        self.external_closed.load(Ordering::Acquire) || self.is_stopping()
    }

    pub(crate) fn begin_stopping(&self) -> bool {
        !self.stopping.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }
}

/// A node marked scheduled under its lock, handed to its runner by
/// [`Ready::run`] once that lock is released. Handing it over under the lock
/// would wake a worker straight into that lock: it would sleep again until
/// the lock is dropped, a second wake-up for every message on an idle path.
#[must_use = "the node is marked scheduled: run it once the node's lock is dropped"]
pub(crate) struct Ready {
    node: Option<Arc<Node>>,
    /// A pool node whose turns take at most `inline_turn_limit`.
    short: bool,
}

impl Ready {
    /// Nothing to hand over.
    pub(crate) fn none() -> Ready {
        Ready {
            node: None,
            short: false,
        }
    }

    /// Hands the node to its runner (a pool worker or its own thread).
    pub(crate) fn run(self, shared: &Shared) {
        if let Some(node) = self.node {
            push_to_runner(shared, &node);
        }
    }

    /// Runs the node's turn on this thread when it is a pool node whose
    /// turns are short, else hands it to its runner as [`Ready::run`] does.
    /// For a connection's reader delivering a remote message: waking a
    /// worker costs more than a short turn, and a pool turn never blocks
    /// (sends that find no room wait in the node's outbox, remote sends do
    /// not wait), so the reader is held up by the turn's length only.
    /// Within [`with_turns_deferred`] the turn waits for the end of it.
    pub(crate) fn run_here_if_short(self, shared: &Arc<Shared>) {
        match self.node {
            Some(node) if self.short => {
                let deferred = DEFERRED.with_borrow_mut(|deferred| match deferred {
                    Some(turns) => {
                        turns.push((shared.clone(), node.clone()));
                        true
                    }
                    None => false,
                });
                if !deferred {
                    run_turn(shared, &node);
                }
            }
            Some(node) => push_to_runner(shared, &node),
            None => {}
        }
    }
}

/// A turn put off: the node, and its network's state to run it with.
type DeferredTurn = (Arc<Shared>, Arc<Node>);

thread_local! {
    /// Short turns this thread made ready inside [`with_turns_deferred`],
    /// in order; `None` outside it.
    static DEFERRED: RefCell<Option<Vec<DeferredTurn>>> = const { RefCell::new(None) };
}

/// Runs `body`, putting off until it returns the short turns it makes ready
/// ([`Ready::run_here_if_short`]), each node's once, in the order they became
/// ready. For a connection's reader delivering the messages of one frame:
/// a turn then takes every message the frame brought its node (up to
/// `DEFERRED_TURN_SCALE` × `ticks_per_turn`), not one: a turn per message
/// was most of a small message's cost. A node stays scheduled meanwhile
/// (nothing else runs it), until the frame is read and the turns put off
/// before its own have run.
pub(crate) fn with_turns_deferred<R>(body: impl FnOnce() -> R) -> R {
    let outermost =
        DEFERRED.with_borrow_mut(|deferred| deferred.is_none() && deferred.replace(Vec::new()).is_none());
    let _end = outermost.then_some(EndDeferring);
    body()
}

/// Ends [`with_turns_deferred`]: runs the turns put off, or, when the body
/// panicked, hands them to their runners, so no node stays scheduled with
/// nobody to run it.
struct EndDeferring;

impl Drop for EndDeferring {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let turns = DEFERRED.with_borrow_mut(Option::take).unwrap_or_default();
            for (shared, node) in turns {
                push_to_runner(&shared, &node);
            }
            return;
        }
        run_deferred();
        DEFERRED.with_borrow_mut(|deferred| *deferred = None);
    }
}

/// Runs the turns put off so far on this thread. Called before the thread
/// waits for room in an inbox: the node it waits for may be one of them.
pub(crate) fn run_deferred() {
    loop {
        let turns = DEFERRED.with_borrow_mut(|deferred| deferred.as_mut().map(std::mem::take));
        let Some(turns) = turns.filter(|turns| !turns.is_empty()) else {
            return;
        };
        for (shared, node) in turns {
            let ticks = shared.config.ticks_per_turn.saturating_mul(DEFERRED_TURN_SCALE);
            run_turn_of(&shared, &node, ticks);
        }
    }
}

/// Marks `node` scheduled if it wants a turn; the caller runs the returned
/// [`Ready`] after dropping the node's lock. Called under that lock, which is
/// what makes "not already queued" and "queue it" one step: a node marked
/// scheduled is never marked again until its turn, so it is queued once.
pub(crate) fn schedule_locked(shared: &Shared, node: &Arc<Node>, inner: &mut NodeInner) -> Ready {
    if !shared.started.load(Ordering::Acquire) || shared.is_stopping() || !inner.wants_turn() {
        return Ready::none();
    }
    inner.phase = Phase::Scheduled;
    shared.active.fetch_add(1, Ordering::AcqRel);
    let limit = shared.config.inline_turn_limit;
    // A zero limit is off, even for a turn too short for the clock to see.
    let short = matches!(node.runner, Runner::Pool)
        && !limit.is_zero()
        && inner.turn_time.is_some_and(|took| took <= limit);
    Ready {
        node: Some(node.clone()),
        short,
    }
}

fn push_to_runner(shared: &Shared, node: &Arc<Node>) {
    match &node.runner {
        // The queue holds each node at most once (guarded by `phase`), so it is
        // bounded by the node count although the channel itself is unbounded.
        Runner::Pool => {
            let _ = shared.ready_tx.send(Job::Run(node.clone()));
        }
        // A full doorbell means the runner is already rung.
        Runner::Dedicated(doorbell) => {
            let _ = doorbell.try_send(());
        }
    }
}

/// A pool worker: runs queued nodes until told to stop.
pub(crate) fn worker_loop(shared: Arc<Shared>) {
    while let Ok(Job::Run(node)) = shared.ready_rx.recv() {
        run_turn(&shared, &node);
    }
}

/// A dedicated runner: runs its node's turns when rung, until shutdown.
pub(crate) fn dedicated_loop(shared: Arc<Shared>, node: Arc<Node>, doorbell: Receiver<()>) {
    loop {
        select! {
            recv(doorbell) -> rung => if rung.is_err() { break },
            recv(shared.stop_rx) -> _ => break,
        }
        if shared.is_stopping() {
            break;
        }
        run_turn(&shared, &node);
    }
}

/// One turn of a node: flush what it could not deliver before, then run up to
/// `ticks_per_turn` ticks, then decide whether it goes back in the queue.
pub(crate) fn run_turn(shared: &Shared, node: &Arc<Node>) {
    run_turn_of(shared, node, shared.config.ticks_per_turn);
}

/// How many times `ticks_per_turn` a turn put off to the end of a frame
/// may run: a frame brings a node up to a few hundred messages at once, and
/// a turn that stops at `ticks_per_turn` hands the rest to a worker (a
/// wake-up and a second hand-off per 32 messages). Its length counts per
/// `ticks_per_turn` ticks, so such a turn does not look long.
const DEFERRED_TURN_SCALE: usize = 32;

/// One turn of at most `max_ticks` ticks.
fn run_turn_of(shared: &Shared, node: &Arc<Node>, max_ticks: usize) {
    let began = Instant::now();
    let (slot, mut outbox) = {
        let mut inner = lock(&node.inner);
        inner.phase = Phase::Running;
        (inner.slot.take(), std::mem::take(&mut inner.outbox))
    };
    let Some(mut slot) = slot else {
        // Unreachable by construction: a node is never queued twice.
        log::error!("node {} was queued while running; skipping the turn", node.name());
        return;
    };
    flush_outbox(shared, node, &mut outbox);
    let mut taken = Taken::default();
    let mut settlement = Settlement::default();
    let blocks = matches!(node.runner, Runner::Dedicated(_));
    let mut ticks = 0;
    for _ in 0..max_ticks {
        if !outbox.is_empty() || shared.is_stopping() {
            break;
        }
        let (waiters, notify) = {
            let mut inner = lock(&node.inner);
            if !inner.fireable() {
                break;
            }
            let freed = inner.take_inputs(&mut taken);
            let waiters = if freed {
                inner.waits.take_waiters()
            } else {
                Vec::new()
            };
            (waiters, freed && inner.external_waiters > 0)
        };
        // Before the tick: a tick may block (dedicated) or run long.
        if notify {
            node.space.notify_all();
        }
        wake::wake_waiters(shared, waiters);
        let mut ctx = ActorContext {
            shared,
            node,
            outbox: &mut outbox,
            inputs: std::mem::take(&mut taken.inputs),
            sources: std::mem::take(&mut taken.sources),
            emitted: Vec::new(),
            state: &mut slot.state,
            config: &node.metadata,
        };
        let result = catch_unwind(AssertUnwindSafe(|| slot.actor.run(&mut ctx)));
        let emitted = std::mem::take(&mut ctx.emitted);
        taken.inputs = std::mem::take(&mut ctx.inputs);
        taken.sources = std::mem::take(&mut ctx.sources);
        taken.inputs.clear();
        taken.sources.clear();
        drop(ctx);
        // Consumed, whatever the tick's outcome: a message that made its
        // actor fail would fail it again if it were replayed.
        for receipt in taken.receipts.drain(..) {
            settlement.add(receipt);
        }
        // A dedicated node may block in what follows (a full inbox, a
        // proxy waiting for credit): what it consumed is settled first, so
        // held credits never wait on it.
        if blocks {
            settlement.complete();
        }
        report_failure(shared, node, result);
        ticks += 1;
        for (port, message) in emitted {
            if deliver(shared, node, &mut outbox, port, message).is_err() {
                break;
            }
        }
    }
    settlement.complete();
    // Counted per `ticks_per_turn` ticks: what a worker's turn would take.
    let mut took = began.elapsed();
    let per_turn = shared.config.ticks_per_turn.max(1);
    if ticks > per_turn {
        took = took.mul_f64(per_turn as f64 / ticks as f64);
    }
    finish_turn(shared, node, slot, outbox, took);
}

fn report_failure(shared: &Shared, node: &Node, result: std::thread::Result<Result<(), ActorError>>) {
    let error = match result {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            format!("panicked: {text}")
        }
    };
    log::error!("actor {} failed: {error}", node.name());
    shared.events.publish(NetworkEvent::ActorFailed {
        node: node.name().to_string(),
        error,
    });
}

fn finish_turn(
    shared: &Shared,
    node: &Arc<Node>,
    slot: super::node::ActorSlot,
    outbox: Outbox,
    took: Duration,
) {
    let went_idle = {
        let mut inner = lock(&node.inner);
        inner.turn_time = Some(match inner.turn_time {
            Some(before) => (before * 3 + took) / 4,
            None => took,
        });
        inner.slot = Some(slot);
        inner.outbox = outbox;
        inner.phase = Phase::Idle;
        if inner.wants_turn() && !shared.is_stopping() {
            // Still counted as active: it goes straight back in the queue.
            inner.phase = Phase::Scheduled;
            false
        } else {
            true
        }
    };
    if !went_idle {
        push_to_runner(shared, node);
    }
    if went_idle && shared.active.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.events.publish(NetworkEvent::Idle);
    }
}

/// Sends `message` out of `node`'s outport `port` to every connection. On the
/// pool a full target keeps the message in `outbox`; on a dedicated thread the
/// call waits for room. Errs only when the network is stopping.
pub(crate) fn deliver(
    shared: &Shared,
    node: &Arc<Node>,
    outbox: &mut Outbox,
    port: usize,
    message: Message,
) -> Result<(), ()> {
    if shared.is_stopping() {
        return Err(());
    }
    let routes = node.current_routes();
    let Some(routes) = routes.get(port).filter(|r| !r.is_empty()) else {
        log::debug!("{}: output on unconnected port dropped", node.name());
        return Ok(());
    };
    let last = routes.len() - 1;
    let source = Source::node(node);
    let mut message = Some(message);
    for (i, route) in routes.iter().enumerate() {
        // Fan-out: every connection gets a copy (a reference-count bump); the last the original.
        let copy = if i == last {
            message.take()
        } else {
            message.clone()
        };
        let Some(copy) = copy else { break };
        let pending = Pending {
            target: route.target.clone(),
            port: route.port,
            envelope: Envelope::new(copy, source.clone()),
        };
        send_pending(shared, node, outbox, pending)?;
    }
    Ok(())
}

/// One message out of `node`: a dedicated node waits for room; on the pool
/// a full target keeps it (and what follows) in the outbox.
fn send_pending(shared: &Shared, node: &Arc<Node>, outbox: &mut Outbox, pending: Pending) -> Result<(), ()> {
    match node.runner {
        Runner::Dedicated(_) => wait_for_room(shared, pending, None, false)
            .map_err(|_| ())?
            .run(shared),
        Runner::Pool if !outbox.is_empty() => outbox.push_back(pending),
        Runner::Pool => {
            if let Err(pending) = wake::offer(shared, node, pending) {
                outbox.push_back(pending);
            }
        }
    }
    Ok(())
}

/// Sends `message` from `node` to one node's inport, outside the graph's
/// connections (a reply): with the same backpressure as [`deliver`].
pub(crate) fn deliver_to(
    shared: &Shared,
    node: &Arc<Node>,
    outbox: &mut Outbox,
    target: Arc<Node>,
    port: usize,
    message: Message,
) -> Result<(), ()> {
    if shared.is_stopping() {
        return Err(());
    }
    let pending = Pending {
        target,
        port,
        envelope: Envelope::new(message, Source::node(node)),
    };
    send_pending(shared, node, outbox, pending)
}

/// Delivers what the outbox holds, in order, until a target is full again.
fn flush_outbox(shared: &Shared, node: &Arc<Node>, outbox: &mut Outbox) {
    while let Some(pending) = outbox.pop_front() {
        let result = match node.runner {
            Runner::Dedicated(_) => wait_for_room(shared, pending, None, false)
                .map(|ready| ready.run(shared))
                .map_err(|_| None),
            Runner::Pool => wake::offer(shared, node, pending).map_err(Some),
        };
        match result {
            Ok(()) => {}
            Err(Some(pending)) => {
                outbox.push_front(pending);
                return;
            }
            Err(None) => return,
        }
    }
}

/// Hands `message` to `target.port`, under the target's lock: straight to the
/// node's forwarder when it has one and nothing is queued or running before
/// it (so order holds), else into the inbox, marking the node scheduled if it
/// wants a turn (the caller runs the [`Ready`] once the lock is dropped).
pub(crate) fn accept_locked(
    shared: &Shared,
    target: &Arc<Node>,
    inner: &mut NodeInner,
    port: usize,
    mut envelope: Envelope,
) -> Ready {
    if let Some(forwarder) = &target.forwarder
        && inner.phase == Phase::Idle
        && inner.ports.iter().all(|p| p.queue.is_empty())
    {
        let origin = envelope.source.origin();
        match forwarder.try_forward(&inner.ports[port].name, envelope.message, &origin) {
            Ok(()) => {
                if let Some(receipt) = envelope.receipt {
                    receipt.complete();
                }
                return Ready::none();
            }
            Err(message) => envelope.message = message,
        }
    }
    inner.ports[port].queue.push_back(envelope);
    schedule_locked(shared, target, inner)
}

/// Why a waiting send gave up.
pub(crate) enum WaitError {
    Full(Message),
    Stopping(Message),
}

/// Waits (on the target's condition variable) until the port has room, the
/// deadline passes (`None`: no deadline) or the network stops. Used by
/// external senders and dedicated nodes, which may block; pool workers never do.
/// The caller runs the returned [`Ready`] (the target's lock is released on return).
pub(crate) fn wait_for_room(
    shared: &Shared,
    pending: Pending,
    timeout: Option<Duration>,
    external: bool,
) -> Result<Ready, WaitError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let target = &pending.target;
    let mut inner = lock(&target.inner);
    loop {
        if shared.is_stopping() || (external && shared.is_external_closed()) {
            return Err(WaitError::Stopping(pending.envelope.message));
        }
        if inner.has_room(pending.port) {
            return Ok(accept_locked(
                shared,
                target,
                &mut inner,
                pending.port,
                pending.envelope,
            ));
        }
        let remaining = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return Err(WaitError::Full(pending.envelope.message)),
            },
            // Woken by consumers and by shutdown; the long timeout only guards
            // against a notification we did not foresee.
            None => Duration::from_secs(60),
        };
        inner.external_waiters += 1;
        inner = target
            .space
            .wait_timeout(inner, remaining)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
        inner.external_waiters -= 1;
    }
}
