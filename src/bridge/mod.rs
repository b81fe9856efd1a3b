//! The WebSocket bridge between peers.
