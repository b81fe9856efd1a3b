#![allow(dead_code)]

pub mod harness;
pub mod rng;
pub mod threads;
pub mod walkthrough;
