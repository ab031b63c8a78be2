//! TLS in the data path: the mesh identity in force ([`mesh`]), inbound mTLS under
//! PeerAuthentication ([`inbound`]) and outbound origination per DestinationRule
//! ([`outbound`]), and Gateway termination by SNI ([`gateway`]).

pub mod gateway;
pub mod inbound;
pub mod mesh;
pub mod outbound;
