use super::*;

/// An unmasked server frame, as Switchboard sends them.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn collect(scanner: &mut Scanner, chunks: &[&[u8]]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    for chunk in chunks {
        scanner
            .feed(chunk, &mut |f| frames.push((f.opcode, f.payload.to_vec())))
            .unwrap();
    }
    frames
}

#[test]
fn frames_split_at_every_byte_boundary_come_out_whole() {
    let big = vec![b'x'; 300];
    let huge = vec![b'y'; 70_000];
    let mut stream = server_frame(OP_TEXT, b"{\"type\":\"connect\"}");
    stream.extend(server_frame(OP_PING, b"hb"));
    stream.extend(server_frame(OP_TEXT, &big));
    stream.extend(server_frame(OP_TEXT, b""));
    stream.extend(server_frame(OP_BINARY, &huge));
    stream.extend(server_frame(OP_CLOSE, &1000u16.to_be_bytes()));
    let expected = vec![
        (OP_TEXT, b"{\"type\":\"connect\"}".to_vec()),
        (OP_PING, b"hb".to_vec()),
        (OP_TEXT, big.clone()),
        (OP_TEXT, Vec::new()),
        (OP_BINARY, huge.clone()),
        (OP_CLOSE, vec![0x03, 0xe8]),
    ];
    // Every split point within the first frames, then a sample of the rest.
    let splits = (0..400).chain((400..stream.len()).step_by(997));
    for split in splits {
        let mut scanner = Scanner::default();
        let (a, b) = stream.split_at(split);
        assert_eq!(collect(&mut scanner, &[a, b]), expected, "split at {split}");
        assert!(!scanner.has_pending());
    }
}

#[test]
fn byte_by_byte_feeding_works() {
    let mut stream = server_frame(OP_TEXT, &[b'a'; 200]);
    stream.extend(server_frame(OP_TEXT, b"b"));
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    let mut scanner = Scanner::default();
    let frames = collect(&mut scanner, &chunks);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].1.len(), 200);
    assert_eq!(frames[1].1, b"b");
}

#[test]
fn masked_and_oversized_server_frames_are_errors() {
    let mut scanner = Scanner::default();
    assert_eq!(
        scanner.feed(&[0x81, 0x81, 1, 2, 3, 4, 5], &mut |_| {}),
        Err(FrameError::Masked)
    );
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        Scanner::default().feed(&huge, &mut |_| {}),
        Err(FrameError::TooLarge(u64::MAX))
    );
}

#[test]
fn close_codes_are_read_from_the_payload() {
    assert_eq!(close_code(&[0x03, 0xf0, b'x']), 1008);
    assert_eq!(close_code(&[]), 1005);
}

#[test]
fn keys_are_base64_of_sixteen_bytes() {
    assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    let key = random_key();
    assert_eq!(key.len(), 24);
    assert!(key.ends_with("=="));
}

#[test]
fn response_heads_are_found_and_read() {
    let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02{}";
    let head = response_head(response).unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(&response[head.len..], b"\x81\x02{}");
    assert_eq!(response_head(b"HTTP/1.1 101 Switching\r\n"), None);
    assert_eq!(
        response_head(b"HTTP/1.1 503 Busy\r\n\r\n").map(|h| h.status),
        Some(503)
    );
    let request = upgrade_request("127.0.0.1:3000", "/?userId=a", "k");
    assert!(request.starts_with("GET /?userId=a HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
    assert!(request.ends_with("Sec-WebSocket-Version: 13\r\n\r\n"));
}
