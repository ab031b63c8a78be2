//! Listening sockets. Each worker gets its own socket on the same address with
//! `SO_REUSEPORT`, so the kernel spreads connections across workers without a shared
//! accept queue.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Opens one listening socket on `addr`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Opens `n` sockets on `addr`; when `addr` has port 0, the others bind the port the
/// first one got, so all share one address.
pub fn bind_many(addr: SocketAddr, n: usize) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    let first = bind(addr)?;
    let local = first.local_addr()?;
    let mut out = vec![first];
    for _ in 1..n.max(1) {
        out.push(bind(local)?);
    }
    Ok((local, out))
}
