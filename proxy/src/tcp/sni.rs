//! Reading the SNI of a TLS ClientHello without terminating TLS, as Envoy's
//! `tls_inspector` listener filter does: the first bytes are parsed (RFC 8446 §4.1.2,
//! RFC 6066 §3) with every length checked against what was received, and kept so they
//! can be replayed to the upstream.

/// What the bytes read so far show.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello may still be arriving: read more.
    Incomplete,
    /// Not a TLS ClientHello (an opaque protocol, or malformed).
    NotTls,
    /// A complete ClientHello, with its SNI host name if it sent one.
    Done(Option<String>),
}

/// TLS record content type `handshake`.
const HANDSHAKE: u8 = 22;
/// Handshake message type `client_hello`.
const CLIENT_HELLO: u8 = 1;
/// Extension `server_name`.
const SERVER_NAME: u16 = 0;

/// Parses `buf`, the first bytes a client sent.
pub fn parse(buf: &[u8]) -> Hello {
    // Handshake messages may span several records: gather the payloads of the leading
    // handshake records until the ClientHello is complete.
    let mut msg = Vec::new();
    let mut rest = buf;
    loop {
        if rest.is_empty() {
            return Hello::Incomplete;
        }
        if rest[0] != HANDSHAKE {
            return Hello::NotTls;
        }
        if rest.len() < 5 {
            return Hello::Incomplete;
        }
        // Record versions are 0x0300..=0x0304 (SSL 3.0 and later; TLS 1.3 writes 0x0301).
        if rest[1] != 3 || rest[2] > 4 {
            return Hello::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Hello::NotTls;
        }
        let Some(payload) = rest.get(5..5 + len) else {
            // Partial record: what has arrived so far may already hold the message.
            msg.extend_from_slice(&rest[5..]);
            return match client_hello(&msg) {
                Hello::Done(s) => Hello::Done(s),
                Hello::NotTls => Hello::NotTls,
                Hello::Incomplete => Hello::Incomplete,
            };
        };
        msg.extend_from_slice(payload);
        rest = &rest[5 + len..];
        match client_hello(&msg) {
            Hello::Incomplete => continue,
            done => return done,
        }
    }
}

/// A reader over a byte slice that fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

/// Parses handshake bytes (record framing removed).
fn client_hello(msg: &[u8]) -> Hello {
    if msg.len() < 4 {
        return Hello::Incomplete;
    }
    if msg[0] != CLIENT_HELLO {
        return Hello::NotTls;
    }
    let len = (usize::from(msg[1]) << 16) | (usize::from(msg[2]) << 8) | usize::from(msg[3]);
    let Some(body) = msg.get(4..4 + len) else {
        return Hello::Incomplete;
    };
    match hello_body(body) {
        Some(sni) => Hello::Done(sni),
        None => Hello::NotTls,
    }
}

/// The SNI of a complete ClientHello body; `None` when it is malformed.
fn hello_body(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Some(None); // no extensions (SSL 3.0 style hello)
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        if ty != SERVER_NAME {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            // host_name(0); a name must be ASCII (RFC 6066: no trailing dot, A-labels).
            if name_type == 0 {
                let s = std::str::from_utf8(name).ok()?;
                if s.is_empty() || !s.is_ascii() {
                    return None;
                }
                return Some(Some(s.to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it, for `sni`.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        roots.roots.clear();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut config = config;
        config.enable_sni = sni.is_some();
        let name = rustls::pki_types::ServerName::try_from(sni.unwrap_or("x.invalid").to_string())
            .unwrap();
        let mut c = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        c.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_sni_of_a_client_hello() {
        let h = hello(Some("Shop.Example.com"));
        assert_eq!(parse(&h), Hello::Done(Some("shop.example.com".into())));
        assert_eq!(parse(&hello(None)), Hello::Done(None));
    }

    #[test]
    fn every_prefix_is_incomplete_never_a_panic() {
        let h = hello(Some("a.example.com"));
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Hello::Incomplete, "prefix {n}");
        }
    }

    #[test]
    fn opaque_and_garbage_are_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(&[22, 9, 9, 0, 1, 0]), Hello::NotTls);
        let mut h = hello(Some("a.example.com"));
        // Corrupt the handshake length past the record: still bounded, no panic.
        h[6] = 0xff;
        let _ = parse(&h);
        for i in 0..h.len() {
            let mut c = hello(Some("a.example.com"));
            c[i] ^= 0xa5;
            let _ = parse(&c);
        }
    }
}
