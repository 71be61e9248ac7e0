//! Smart sockets: ZeroMQ-style messaging that speaks the aiomsg protocol.
#![forbid(unsafe_code)]
