#![allow(dead_code)]

pub mod harness;
pub mod threads;
pub mod walkthrough;
