use super::*;

fn round_trip(json: &str) -> String {
    to_json(&from_json(json.as_bytes()).unwrap()).unwrap()
}

#[test]
fn keeps_every_json_type_and_the_key_order() {
    let json = r#"{"type":"message","room":"r","payload":{"z":1,"a":[null,true,false,-1,-200,300,70000,5000000000,-5000000000,18446744073709551615,-9223372036854775808,1.5,-0.25,"é\"\n\u0001",{}],"m":1.0}}"#;
    assert_eq!(round_trip(json), json);
}

#[test]
fn encodes_what_other_libraries_decode() {
    // {"type":"ping","n":[1,-1]} as any MessagePack library writes it.
    let expected = [
        0x82, 0xa4, b't', b'y', b'p', b'e', 0xa4, b'p', b'i', b'n', b'g', 0xa1, b'n', 0x92, 0x01,
        0xff,
    ];
    assert_eq!(
        from_json(br#"{"type":"ping","n":[1,-1]}"#).unwrap(),
        expected
    );
    assert_eq!(to_json(&expected).unwrap(), r#"{"type":"ping","n":[1,-1]}"#);
}

#[test]
fn reads_every_width_of_every_marker() {
    let mut frame = vec![0x8b];
    let mut entry = |key: u8, value: &[u8]| {
        frame.extend([0xa1, key]);
        frame.extend(value);
    };
    entry(b'a', &[0xcc, 200]);
    entry(b'b', &[0xcd, 1, 0]);
    entry(b'c', &[0xce, 0, 1, 0, 0]);
    entry(b'd', &[0xd0, 0x80]);
    entry(b'e', &[0xd1, 0xff, 0x00]);
    entry(b'f', &[0xd2, 0xff, 0xff, 0xff, 0xff]);
    entry(b'g', &[0xca, 0x3f, 0xc0, 0, 0]);
    entry(b'h', &[0xd9, 2, b'h', b'i']);
    entry(b'i', &[0xda, 0, 1, b'x']);
    entry(b'j', &[0xdc, 0, 1, 0xc0]);
    entry(
        b'k',
        &[0xde, 0, 1, 0xdb, 0, 0, 0, 1, b'q', 0xdd, 0, 0, 0, 0],
    );
    assert_eq!(
        to_json(&frame).unwrap(),
        r#"{"a":200,"b":256,"c":65536,"d":-128,"e":-256,"f":-1,"g":1.5,"h":"hi","i":"x","j":[null],"k":{"q":[]}}"#
    );
}

#[test]
fn bytes_become_a_base64_map_and_back() {
    for bytes in [&b""[..], b"\x00\xff\x10", &[7u8; 300], &vec![1u8; 70_000]] {
        let mut frame = vec![0x81, 0xa1, b'p'];
        let mut buf = ByteBuf::new();
        written(rmp::encode::write_bin(&mut buf, bytes));
        frame.extend(buf.into_vec());
        let json = to_json(&frame).unwrap();
        let expected = format!(r#"{{"p":{{"$bytes":"{}"}}}}"#, STANDARD.encode(bytes));
        assert_eq!(json, expected);
        assert_eq!(from_json(json.as_bytes()).unwrap(), frame, "bin again");
    }
}

#[test]
fn maps_that_only_look_like_bytes_stay_maps() {
    for json in [
        r#"{"$bytes":"not base64!"}"#,
        r#"{"$bytes":12}"#,
        r#"{"$bytes":"AA==","other":1}"#,
        r#"{"$byte":"AA=="}"#,
    ] {
        assert_eq!(round_trip(json), json);
    }
}

#[test]
fn refuses_what_json_cannot_hold() {
    let cases: &[(&[u8], MsgPackError)] = &[
        (&[], MsgPackError::Truncated),
        (&[0xa5, b'a'], MsgPackError::Truncated),
        (&[0x92, 0x01], MsgPackError::Truncated),
        (&[0xdd, 0xff, 0xff, 0xff, 0xff], MsgPackError::Truncated),
        (&[0xc6, 0xff, 0xff, 0xff, 0xff], MsgPackError::Truncated),
        (&[0xcf, 0, 0], MsgPackError::Truncated),
        (&[0x01, 0x02], MsgPackError::TrailingBytes(1)),
        (&[0xc1], MsgPackError::Reserved),
        (&[0xd4, 0x01, 0x00], MsgPackError::Extension),
        (&[0xc7, 0x00, 0x01], MsgPackError::Extension),
        (&[0x81, 0x01, 0x02], MsgPackError::KeyNotString),
        (&[0x81, 0xc0, 0x02], MsgPackError::KeyNotString),
        (&[0xa2, 0xc3, 0x28], MsgPackError::Utf8),
        (&[0xca, 0x7f, 0xc0, 0, 0], MsgPackError::NotFinite),
        (
            &[0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0],
            MsgPackError::NotFinite,
        ),
    ];
    for (frame, error) in cases {
        assert_eq!(to_json(frame).as_ref(), Err(error), "{frame:x?}");
    }
}

#[test]
fn nesting_is_bounded_at_its_edge() {
    let nested = |depth: usize| {
        let mut frame = vec![0x91; depth];
        frame.push(0xc0);
        frame
    };
    let deepest = to_json(&nested(MAX_DEPTH)).unwrap();
    assert_eq!(deepest.len(), 2 * MAX_DEPTH + 4);
    assert_eq!(to_json(&nested(MAX_DEPTH + 1)), Err(MsgPackError::TooDeep));
    // Far past the limit: an error, not a stack overflow.
    assert_eq!(to_json(&vec![0x91; 1 << 20]), Err(MsgPackError::TooDeep));
    let mut maps = Vec::new();
    for _ in 0..=MAX_DEPTH {
        maps.extend([0x81, 0xa1, b'k']);
    }
    maps.push(0xc0);
    assert_eq!(to_json(&maps), Err(MsgPackError::TooDeep));
    // The JSON form of the deepest frame, bytes included, still reads as JSON.
    let mut with_bytes = vec![0x91; MAX_DEPTH];
    with_bytes.extend([0xc4, 1, 0xaa]);
    let json = to_json(&with_bytes).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    assert_eq!(from_json(json.as_bytes()).unwrap(), with_bytes);
}

#[test]
fn invalid_json_is_an_error() {
    assert!(matches!(from_json(b"{\"a\":"), Err(MsgPackError::Json(_))));
}

/// The fuzz target's property (fuzz/fuzz_targets/msgpack_frame.rs) over many pseudo-random
/// frames, so that it is checked on every test run too: bytes transcode to JSON or to an
/// error, and JSON that came out reads back to the same JSON.
#[test]
fn random_bytes_transcode_or_fail_cleanly_and_round_trip() {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut transcoded = 0;
    for _ in 0..50_000 {
        let len = (next() % 48) as usize;
        let frame: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                // Mostly small containers, strings and numbers, so that many frames are valid.
                match r % 4 {
                    0 => 0x80 | (r >> 8) as u8 & 0x03,
                    1 => 0x90 | (r >> 8) as u8 & 0x03,
                    2 => 0xa0 | (r >> 8) as u8 & 0x03,
                    _ => (r >> 8) as u8,
                }
            })
            .collect();
        let Ok(json) = to_json(&frame) else { continue };
        transcoded += 1;
        assert!(
            serde_json::from_str::<serde_json::Value>(&json).is_ok(),
            "{json}"
        );
        let packed = from_json(json.as_bytes()).unwrap();
        assert_eq!(to_json(&packed).as_deref(), Ok(json.as_str()), "{frame:x?}");
    }
    assert!(transcoded > 200, "only {transcoded} frames were valid");
}
