//! The harness of the multihost fault suite (`tests/multihost.rs`):
//! simulated hosts in network namespaces and the faults on their links
//! (`netns`), processes inside them and what `/proc` says of them
//! (`procs`), the federation of real binaries (`cluster`), the traffic
//! source (`role`), the accounting of every message (`ledger`), and the
//! runner (`suite`).

pub mod cluster;
pub mod ledger;
pub mod netns;
pub mod procs;
pub mod role;
pub mod suite;
