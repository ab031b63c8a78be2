//! The guard on real sockets: what the server reads, what the client receives.

use super::wire::{flag, kind, Head, PREFACE};
use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONFIG: Config = Config {
    max_frame_size: 16_384,
    max_streams: 16,
};

/// A connected client socket and the server's, guarded.
async fn pair(mode: Mode) -> (TcpStream, H2Guard<TcpStream>, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let refused = Arc::new(AtomicU64::new(0));
    let (guard, verdict) = H2Guard::new(s, mode, CONFIG, refused.clone());
    assert!(!verdict.get());
    (c, guard, refused)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.extend([kind, flags]);
    v.extend(stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(frame(kind::SETTINGS, 0, 0, &[]));
    v
}

/// The next frame the client receives.
async fn recv(c: &mut TcpStream) -> (Head, Vec<u8>) {
    let mut head = [0; 9];
    c.read_exact(&mut head).await.unwrap();
    let h = Head::parse(&head);
    let mut payload = vec![0; h.len as usize];
    c.read_exact(&mut payload).await.unwrap();
    (h, payload)
}

/// Reads through the guard until `want` octets arrived.
async fn read_n(g: &mut H2Guard<TcpStream>, want: usize) -> Vec<u8> {
    let mut got = vec![0; want];
    g.read_exact(&mut got).await.unwrap();
    got
}

#[tokio::test]
async fn bad_preface_gets_a_goaway_then_end_of_stream() {
    let (mut c, mut g, refused) = pair(Mode::Sniff).await;
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    g.read_to_end(&mut seen).await.unwrap();
    assert_eq!(seen, &PREFACE[..18]);
    let (h, p) = recv(&mut c).await;
    assert_eq!((h.kind, h.stream), (kind::GOAWAY, 0));
    assert_eq!(&p[..8], &[0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(refused.load(Ordering::Relaxed), 1);
    // Whatever the server writes now is not the client's business.
    g.write_all(&frame(kind::PING, flag::ACK, 0, b"12345678"))
        .await
        .unwrap();
    g.shutdown().await.unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn injected_frames_follow_the_servers_frame() {
    let (mut c, mut g, refused) = pair(Mode::Sniff).await;
    let mut input = start();
    let request = frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &[0x82],
    );
    input.extend(&request);
    c.write_all(&input).await.unwrap();
    assert_eq!(read_n(&mut g, input.len()).await, input);
    // The server starts its response, then the client sends DATA after END_STREAM.
    let response = frame(kind::DATA, flag::END_STREAM, 1, b"0123456789");
    g.write_all(&response[..6]).await.unwrap();
    let mut late = frame(kind::DATA, 0, 1, b"late!");
    late.extend(frame(kind::PING, 0, 0, b"12345678"));
    c.write_all(&late).await.unwrap();
    // The server sees the PING only.
    assert_eq!(read_n(&mut g, 17).await, &late[14..]);
    assert_eq!(refused.load(Ordering::Relaxed), 1);
    g.write_all(&response[6..]).await.unwrap();
    g.flush().await.unwrap();
    // The whole response frame, then the credit and the stream error.
    assert_eq!(recv(&mut c).await.1, b"0123456789");
    let (h, p) = recv(&mut c).await;
    assert_eq!(
        (h.kind, h.stream, p.as_slice()),
        (kind::WINDOW_UPDATE, 0, &[0, 0, 0, 5][..])
    );
    let (h, p) = recv(&mut c).await;
    assert_eq!(
        (h.kind, h.stream, p.as_slice()),
        (kind::RST_STREAM, 1, &[0, 0, 0, 5][..])
    );
}

#[tokio::test]
async fn connection_error_after_a_partial_server_frame() {
    let (mut c, mut g, refused) = pair(Mode::Http2).await;
    let mut input = start();
    input.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &[0x82],
    ));
    c.write_all(&input).await.unwrap();
    assert_eq!(read_n(&mut g, input.len()).await, input);
    let response = frame(kind::DATA, 0, 3, b"0123456789");
    g.write_all(&response[..6]).await.unwrap();
    c.write_all(&frame(kind::PING, 0, 0, b"123")).await.unwrap();
    // The reader finds the bad PING: nothing for the server, and no GOAWAY yet (the
    // server is inside a frame), so the read waits until the frame is finished.
    let (mut r, mut w) = tokio::io::split(g);
    let reader = tokio::spawn(async move {
        let mut buf = [0; 64];
        r.read(&mut buf).await.unwrap()
    });
    while refused.load(Ordering::Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    assert!(!reader.is_finished());
    w.write_all(&response[6..]).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(reader.await.unwrap(), 0);
    assert_eq!(recv(&mut c).await.1, b"0123456789");
    let (h, p) = recv(&mut c).await;
    assert_eq!(h.kind, kind::GOAWAY);
    // Last stream 3, FRAME_SIZE_ERROR, the rule as debug data.
    assert_eq!(&p[..8], &[0, 0, 0, 3, 0, 0, 0, 6]);
    assert!(std::str::from_utf8(&p[8..]).unwrap().contains("PING"));
}

#[tokio::test]
async fn http1_passes_untouched_both_ways() {
    let (mut c, mut g, refused) = pair(Mode::Sniff).await;
    let req = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    c.write_all(req).await.unwrap();
    assert_eq!(read_n(&mut g, req.len()).await, req);
    // Response octets that would look like a frame header with a huge length.
    let resp = b"\xff\xff\xffHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    g.write_all(resp).await.unwrap();
    let mut got = vec![0; resp.len()];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(got, resp);
    assert_eq!(refused.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn tiny_read_buffers_get_the_same_octets() {
    for size in [1, 3, 9, 17] {
        let (mut c, mut g, _) = pair(Mode::Sniff).await;
        let mut input = start();
        let request = frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &[0x82],
        );
        input.extend(&request);
        let mut want = input.clone();
        input.extend(frame(kind::DATA, 0, 1, b"dropped"));
        let ping = frame(kind::PING, 0, 0, b"12345678");
        input.extend(&ping);
        want.extend(&ping);
        c.write_all(&input).await.unwrap();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let mut small = vec![0; size];
            let n = g.read(&mut small).await.unwrap();
            assert!(n > 0, "size {size}: end of stream after {got:?}");
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, want, "size {size}");
    }
}
