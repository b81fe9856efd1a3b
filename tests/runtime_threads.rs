//! `shutdown()` joins every thread the network started. Alone in its own test
//! binary so that no other test's threads disturb the count.

mod common;

use common::threads::{assert_threads_back_to, thread_count};
use std::time::Duration;

use reflow_distributed::runtime::{FnActor, Network, NetworkConfig, RecorderLog, Threading};
use serde_json::json;

#[test]
fn shutdown_joins_every_thread() {
    let before = thread_count();
    let mut config = NetworkConfig::default();
    config.workers = 3;
    let network = Network::new(config);
    let source = FnActor::new(&[], &["out"], |ctx| {
        let mut i = 0i64;
        while !ctx.is_shutting_down() {
            if ctx.send("out", i).is_err() {
                break;
            }
            i += 1;
        }
        Ok(())
    })
    .with_threading(Threading::Dedicated);
    network.add_actor("endless", Box::new(source), json!({})).unwrap();
    network
        .add_node("sink", "recorder", json!({"history_capacity": 10}))
        .unwrap();
    network.connect("endless", "out", "sink", "in").unwrap();
    network.start().unwrap();
    let log = network.node_handle::<RecorderLog>("sink").unwrap();
    assert!(log.wait_until(Duration::from_secs(20), |r| r.len() == 10));
    assert_eq!(thread_count(), before + 4, "3 workers and 1 dedicated runner");
    network.shutdown();
    assert_threads_back_to(before);
}
