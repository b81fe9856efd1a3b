//! Discovery: registry, HTTP contract, server and client.
