//! Reconnecting, heartbeating aiomsg v1 connections over any byte stream.
#![forbid(unsafe_code)]
