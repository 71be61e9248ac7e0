//! Publish, round-robin and by-identity routing for smartsock, as tower layers.
#![forbid(unsafe_code)]
