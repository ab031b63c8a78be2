//! Byte streams between two peers, below both the HTTP and the TCP data paths: a stream
//! that counts what passes ([`counted`]) and the bidirectional copy of a tunnel
//! ([`splice`]).

pub mod counted;
mod splice;

pub use splice::splice;
