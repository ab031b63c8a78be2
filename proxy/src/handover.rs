//! Binary upgrade: a new process takes the listening sockets of the running one over a
//! unix socket (`SCM_RIGHTS`), as Envoy's hot restart and Pingora's graceful upgrade do.
//! Both processes accept on the very same kernel sockets during the hand-over, so no
//! connection is refused and none waiting in an accept queue is lost; the old process
//! then drains its own connections and exits.
//!
//! The exchange, on a stream socket at `--upgrade-socket PATH`:
//! 1. new → old: `UPGRADE\n`
//! 2. old → new: one line of JSON `[{"name": listener, "count": n}, ...]` carrying every
//!    socket, in that order, as `SCM_RIGHTS`
//! 3. new → old: `READY\n` once it serves (listeners and admin bound). The old process
//!    stops accepting and drains. If the new process fails before this line, the old one
//!    simply goes on serving.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The admin listener's name in the hand-over.
pub const ADMIN: &str = "admin";

/// The most sockets one hand-over carries (the kernel's `SCM_MAX_FD` is 253).
const MAX_FDS: usize = 253;

/// Sockets taken over from a running process.
pub struct Inherited {
    /// Listening sockets by listener name (the admin one under [`ADMIN`]).
    pub sockets: HashMap<String, Vec<TcpListener>>,
    conn: UnixStream,
}

impl Inherited {
    /// Tells the previous process this one is serving: it stops accepting and drains.
    pub fn ready(mut self) -> io::Result<()> {
        self.conn.write_all(b"READY\n")
    }
}

/// Takes the listening sockets of the process serving at `path`; `Ok(None)` when no
/// process listens there (first start, or a stale socket file).
pub fn take_over(path: &Path) -> io::Result<Option<Inherited>> {
    let mut conn = match UnixStream::connect(path) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(with_path(e, path)),
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(b"UPGRADE\n")?;
    let (line, fds) = receive(&conn)?;
    let names: Vec<(String, usize)> = serde_json::from_str::<Vec<serde_json::Value>>(&line)
        .map_err(|e| invalid(format!("hand-over message: {e}")))?
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let count = v["count"].as_u64().unwrap_or(0) as usize;
            (name, count)
        })
        .collect();
    if names.iter().map(|(_, n)| n).sum::<usize>() != fds.len() {
        return Err(invalid(format!(
            "hand-over message lists {} sockets but carried {}",
            names.iter().map(|(_, n)| n).sum::<usize>(),
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    let mut sockets = HashMap::new();
    for (name, count) in names {
        let list: Vec<TcpListener> = fds.by_ref().take(count).map(TcpListener::from).collect();
        for s in &list {
            s.set_nonblocking(true)?;
        }
        sockets.insert(name, list);
    }
    conn.set_read_timeout(None)?;
    Ok(Some(Inherited { sockets, conn }))
}

fn receive(conn: &UnixStream) -> io::Result<(String, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut fds = Vec::new();
    let n = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel just installed `fd` in this process for this
                    // message; nothing else owns it.
                    #[allow(unsafe_code)]
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        msg.bytes
    };
    if n == 0 {
        return Err(invalid("the running process closed the hand-over".into()));
    }
    let mut text = buf[..n].to_vec();
    // The sockets came with the first bytes; the rest of the line may follow.
    let mut reader = BufReader::new(conn);
    if !text.ends_with(b"\n") {
        reader.read_until(b'\n', &mut text)?;
    }
    let line =
        String::from_utf8(text).map_err(|_| invalid("hand-over message not UTF-8".into()))?;
    Ok((line.trim_end().to_string(), fds))
}

/// Offers this process's sockets at a path until a successor takes them.
pub struct Offer {
    path: PathBuf,
}

impl Offer {
    /// The path offered at.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Listens at `path` (replacing whatever is there, atomically, so a successor never
/// finds no socket) for a successor. On each request it sends what `sockets` returns;
/// when the successor reports ready, `handed_over` runs once and the offer ends.
pub fn offer(
    path: &Path,
    sockets: impl Fn() -> io::Result<Vec<(String, Vec<TcpListener>)>> + Send + 'static,
    handed_over: impl FnOnce() + Send + 'static,
) -> io::Result<Offer> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| with_path(e, &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| with_path(e, path))?;
    std::thread::Builder::new()
        .name("upgrade".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                match serve_successor(conn, &sockets) {
                    Ok(true) => {
                        handed_over();
                        return;
                    }
                    Ok(false) => {
                        tracing::warn!("the new process went away before serving: still serving")
                    }
                    Err(e) => tracing::warn!(error = %e, "hand-over failed: still serving"),
                }
            }
        })?;
    Ok(Offer {
        path: path.to_path_buf(),
    })
}

/// Runs one hand-over; true once the successor serves.
fn serve_successor(
    conn: UnixStream,
    sockets: &impl Fn() -> io::Result<Vec<(String, Vec<TcpListener>)>>,
) -> io::Result<bool> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.trim_end() != "UPGRADE" {
        return Err(invalid(format!("unexpected request {:?}", line.trim_end())));
    }
    let sockets = sockets()?;
    let listing: Vec<serde_json::Value> = sockets
        .iter()
        .map(|(name, list)| serde_json::json!({"name": name, "count": list.len()}))
        .collect();
    let raw: Vec<RawFd> = sockets
        .iter()
        .flat_map(|(_, list)| list.iter().map(|s| s.as_raw_fd()))
        .collect();
    if raw.len() > MAX_FDS {
        return Err(invalid(format!(
            "{} listening sockets: at most {MAX_FDS} can be handed over (fewer workers?)",
            raw.len()
        )));
    }
    let mut payload = serde_json::to_vec(&listing).map_err(|e| invalid(e.to_string()))?;
    payload.push(b'\n');
    let sent = sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    (&conn).write_all(&payload[sent..])?;
    tracing::info!(
        sockets = raw.len(),
        "listening sockets handed to a new process"
    );
    // The successor loads and binds before it answers: give it time.
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    line.clear();
    reader.read_line(&mut line)?;
    Ok(line.trim_end() == "READY")
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("upgrade socket {}: {e}", path.display()))
}
