//! The discovery client dials its endpoints directly even when the
//! environment names an HTTP proxy. Alone in its own test binary because it
//! changes the process environment.

mod discovery_support;

use std::time::Duration;

use reflow_distributed::discovery::{
    DiscoveryClientConfig, DiscoveryEvent, DiscoveryService, RegistrationInfo,
};

use discovery_support::*;

#[test]
fn proxy_variables_in_the_environment_are_ignored() {
    // SAFETY: set before this test binary starts any other thread; it holds
    // this one test only.
    unsafe {
        for var in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
            std::env::set_var(var, "http://127.0.0.1:9");
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let server = ServerProcess::start(&[]);
    let mut config = DiscoveryClientConfig::default();
    config.endpoints = vec![server.addr.to_string()];
    config.refresh_interval = Duration::from_millis(100);
    let me = RegistrationInfo {
        network_id: "alpha".into(),
        instance_id: "alpha-1".into(),
        endpoint: "127.0.0.1:9100".into(),
        capabilities: vec![],
    };
    let alpha = DiscoveryService::start(config, me).expect("start");
    let events = alpha.subscribe();
    register(server.addr, "beta", "beta-1", "127.0.0.1:9200");
    let event = events
        .recv_timeout(PATIENCE)
        .expect("an event despite the proxy variables");
    assert!(
        matches!(event, DiscoveryEvent::Added(ref n) if n.network_id == "beta"),
        "{event:?}"
    );
}
