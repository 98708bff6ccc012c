//! The PROXY protocol (HAProxy's, versions 1 and 2): a TCP load balancer that does not speak
//! HTTP (an AWS NLB, HAProxy in TCP mode, nginx's `stream` module) writes the client's address
//! in a header before the connection's first byte. With `--proxy-protocol`, a connection from a
//! trusted proxy (`--trusted-proxies`) must start with one; its source address is the client
//! for the per-IP cap and the logs, as if it had connected directly (and so the HTTP forwarding
//! headers of such a client count only if the client is itself a trusted proxy).
//!
//! The header is read with exact reads: the 12 bytes that tell the versions apart, then the
//! length a version 2 header states, or a version 1 line byte by byte up to its CRLF (at most
//! [`V1_MAX`] bytes). Nothing after the header is consumed, so the TLS handshake or the HTTP
//! request that follows reads the socket as if nothing came before. A malformed header closes
//! the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The first 12 bytes of a version 2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 line, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Longest version 2 address block read (the specification allows up to 65 535 bytes of
/// TLVs; we read and drop them up to this).
const V2_MAX: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    /// Reading failed, or the connection ended inside the header.
    #[error("reading the PROXY header: {0}")]
    Read(#[from] std::io::Error),
    /// The connection does not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// The header does not follow the protocol.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Reads a PROXY header from the start of `stream`. Returns the client's address and port, or `None`
/// when the header says the connection carries none (v1 `UNKNOWN`, v2 `LOCAL` or an address
/// family other than IPv4 and IPv6: health checks of the proxy itself).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut start = [0u8; 12];
    stream.read_exact(&mut start).await?;
    if start == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream.read_exact(&mut fixed).await?;
        let length = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if length > V2_MAX {
            return Err(ProxyHeaderError::Malformed("address block too long"));
        }
        let mut block = vec![0u8; length];
        stream.read_exact(&mut block).await?;
        return parse_v2(fixed[0], fixed[1], &block);
    }
    if !start.starts_with(b"PROXY ") {
        return Err(ProxyHeaderError::Missing);
    }
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed("version 1 line too long"));
        }
        line.push(stream.read_u8().await?);
    }
    parse_v1(&line)
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN …\r\n`.
fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let line = std::str::from_utf8(line)
        .ok()
        .and_then(|line| line.strip_suffix("\r\n"))
        .ok_or(ProxyHeaderError::Malformed("version 1 line is not text"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            source,
            destination,
            source_port,
            destination_port,
        ] => {
            let source: IpAddr = source
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("bad source address"))?;
            let fits = matches!(
                (*family, source),
                ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_))
            );
            let port = source_port.parse::<u16>().ok();
            let valid = fits
                && destination.parse::<IpAddr>().is_ok()
                && destination_port.parse::<u16>().is_ok();
            match port {
                Some(port) if valid => Ok(Some(SocketAddr::new(source, port))),
                _ => Err(ProxyHeaderError::Malformed("bad version 1 addresses")),
            }
        }
        _ => Err(ProxyHeaderError::Malformed("bad version 1 line")),
    }
}

/// A version 2 header after its signature: version and command, family and protocol, and the
/// address block.
fn parse_v2(
    version_command: u8,
    family: u8,
    block: &[u8],
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed(
            "version 2 header of another version",
        ));
    }
    match version_command & 0x0f {
        // LOCAL: the proxy's own connection (a health check); no client address.
        0 => return Ok(None),
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed("unknown version 2 command")),
    }
    match family >> 4 {
        1 => {
            let bytes: [u8; 4] = block
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyHeaderError::Malformed("short IPv4 address block"))?;
            let port = block
                .get(8..10)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .filter(|_| block.len() >= 12)
                .ok_or(ProxyHeaderError::Malformed("short IPv4 address block"))?;
            Ok(Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(bytes)),
                port,
            )))
        }
        2 => {
            let bytes: [u8; 16] = block
                .get(..16)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyHeaderError::Malformed("short IPv6 address block"))?;
            let port = block
                .get(32..34)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .filter(|_| block.len() >= 36)
                .ok_or(ProxyHeaderError::Malformed("short IPv6 address block"))?;
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(bytes)),
                port,
            )))
        }
        // AF_UNSPEC or AF_UNIX: nothing to count the connection under but the proxy.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut reader = bytes;
        let result = read_header(&mut reader).await;
        (result, reader.to_vec())
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&(block.len() as u16).to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    #[tokio::test]
    async fn a_version_1_header_gives_the_source_and_leaves_the_request() {
        let (result, rest) =
            read(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1").await;
        assert_eq!(result.unwrap(), Some("203.0.113.7:56324".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1");
        let (result, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").await;
        assert_eq!(result.unwrap(), Some("[2001:db8::1]:1".parse().unwrap()));
        let (result, rest) = read(b"PROXY UNKNOWN\r\nGET").await;
        assert_eq!(result.unwrap(), None);
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn a_version_2_header_gives_the_source_and_skips_its_tlvs() {
        let mut block = vec![198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb];
        block.extend_from_slice(&[0x04, 0x00, 0x01, 0xff]); // a TLV
        let mut bytes = v2(1, 0x11, &block);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (result, rest) = read(&bytes).await;
        assert_eq!(result.unwrap(), Some("198.51.100.9:8080".parse().unwrap()));
        assert_eq!(
            rest, b"\x16\x03\x01",
            "the TLS hello that follows is untouched"
        );
        let mut block6 = vec![0u8; 36];
        block6[15] = 1;
        block6[33] = 80;
        let (result, _) = read(&v2(1, 0x21, &block6)).await;
        assert_eq!(result.unwrap(), Some("[::1]:80".parse().unwrap()));
        let (result, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(result.unwrap(), None, "LOCAL: a health check");
    }

    #[tokio::test]
    async fn everything_else_is_refused() {
        let long = format!("PROXY TCP4 1.1.1.1 2.2.2.2 1 2{}\r\n", " ".repeat(V1_MAX));
        let cases: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n".to_vec(),
            b"PROXY TCP4 2001:db8::1 2.2.2.2 1 2\r\n".to_vec(),
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 70000\r\n".to_vec(),
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2".to_vec(),
            long.into_bytes(),
            v2(1, 0x11, &[1, 2, 3]),
            v2(1, 0x21, &[0; 20]),
            v2(7, 0x11, &[0; 12]),
            {
                let mut header = V2_SIGNATURE.to_vec();
                header.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
                header
            },
            b"short".to_vec(),
        ];
        for bytes in cases {
            assert!(
                read(&bytes).await.0.is_err(),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}
