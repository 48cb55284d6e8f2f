//! Helpers shared by the TigerBeetle test binaries.

#![allow(dead_code)]

pub mod tigerbeetle;
