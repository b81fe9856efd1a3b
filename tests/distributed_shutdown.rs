//! `DistributedNetwork::shutdown` joins every thread the peer started: local
//! workers, proxy threads, bridge listener, readers, writers, heartbeat and
//! reconnect threads. Alone in its own test binary so that no other test's
//! threads disturb the count.
mod common;

use common::threads::{assert_threads_back_to, thread_count};

use std::time::Duration;

use reflow_distributed::DistributedConfig;
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{Recorder, RecorderLog};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(10);

fn peer(network: &str) -> (DistributedNetwork, std::sync::Arc<RecorderLog>) {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = Duration::from_millis(100);
    config.network.workers = 2;
    let net = DistributedNetwork::new(config).unwrap();
    let recorder = Recorder::new(100);
    let log = recorder.log();
    net.register_local_actor("recorder", Box::new(recorder), json!({}))
        .unwrap();
    (net, log)
}

#[test]
fn shutdown_joins_every_thread_of_both_peers() {
    let before = thread_count();
    {
        let (alpha, alpha_log) = peer("alpha");
        let (beta, beta_log) = peer("beta");
        let to_alpha = beta.register_remote_actor("recorder", "alpha").unwrap();
        alpha.start().unwrap();
        beta.start().unwrap();
        let to_beta = alpha.register_remote_actor("recorder", "beta").unwrap();
        let endpoint = alpha.local_addr().unwrap().to_string();
        assert_eq!(beta.connect_to_network(&endpoint).unwrap(), "alpha");

        beta.send_to_actor(&to_alpha, "in", "ping").unwrap();
        assert!(alpha_log.wait_until(PATIENCE, |r| r.len() == 1));
        alpha.send_to_actor(&to_beta, "in", "pong").unwrap();
        assert!(beta_log.wait_until(PATIENCE, |r| r.len() == 1));
        assert!(
            thread_count() > before + 10,
            "workers, proxies and bridge threads are running"
        );

        beta.shutdown();
        alpha.shutdown();
        // Idempotent, and the peers refuse work afterwards.
        alpha.shutdown();
        assert!(!alpha.is_connected_to("beta"));
        assert!(
            beta.send_to_remote_actor("alpha", "recorder", "in", "late")
                .is_err()
        );
        assert!(beta.start().is_err());
    }
    assert_threads_back_to(before);
}
