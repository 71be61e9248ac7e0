//! At-least-once delivery for smartsock: acks, resends and duplicate filtering as tower middleware.
#![forbid(unsafe_code)]
