use super::*;
use crate::ids::StreamId;

const LIMITS: ParseLimits = ParseLimits {
    max_history: 100,
    max_name_chars: 16,
    max_content_chars: 10,
    max_metadata_bytes: 20,
};

fn ok(text: &str) -> Inbound<'_> {
    parse(text, &LIMITS).unwrap()
}

fn code(text: &str) -> ErrorCode {
    parse(text, &LIMITS).unwrap_err().code
}

#[test]
fn join_and_leave_carry_a_validated_room() {
    let Command::JoinRoom { room, since: None } =
        ok(r#"{"type":"join_room","payload":{"room":"general"}}"#).command
    else {
        panic!("not a join");
    };
    assert_eq!(room.as_str(), "general");
    assert!(matches!(
        ok(r#"{"type":"leave_room","payload":{"room":"general"}}"#).command,
        Command::LeaveRoom { .. }
    ));
}

#[test]
fn message_payload_is_forwarded_without_the_room() {
    let inbound = ok(
        r#"{"type":"message","payload":{"room":"r","content":"Hi","meta":{"a":[1, 2]}},"id":"m1"}"#,
    );
    assert_eq!(inbound.id.unwrap().get(), r#""m1""#);
    let Command::Message { room, payload } = inbound.command else {
        panic!("not a message");
    };
    assert_eq!(room.as_str(), "r");
    assert_eq!(payload.get(), r#"{"content":"Hi","meta":{"a":[1, 2]}}"#);
}

#[test]
fn escaped_strings_are_decoded() {
    let Command::JoinRoom { room, since: None } =
        ok(r#"{"type":"join_room","payload":{"room":"caf\u00e9"}}"#).command
    else {
        panic!("not a join");
    };
    assert_eq!(room.as_str(), "café");
}

#[test]
fn syntax_errors_are_invalid_json() {
    for text in ["", "{", "{\"type\":", "not json", "{\"type\":\"ping\",}"] {
        assert_eq!(code(text), ErrorCode::InvalidJson, "{text:?}");
    }
}

#[test]
fn wrong_shapes_are_invalid_message() {
    for text in [
        "[1,2]",
        "\"join_room\"",
        "42",
        "{}",
        r#"{"type":7}"#,
        r#"{"type":"join_room"}"#,
        r#"{"type":"join_room","payload":{}}"#,
        r#"{"type":"join_room","payload":{"room":5}}"#,
        r#"{"type":"join_room","payload":"general"}"#,
        r#"{"type":"join_room","payload":{"room":""}}"#,
        r#"{"type":"join_room","payload":{"room":"has space"}}"#,
        r#"{"type":"join_room","payload":{"room":"seventeen-chars-x"}}"#,
        r#"{"type":"message","payload":{"room":"r"}}"#,
        r#"{"type":"message","payload":{"content":"x"}}"#,
        r#"{"type":"broadcast","payload":{}}"#,
        r#"{"type":"ping","id":{"nested":true}}"#,
    ] {
        assert_eq!(code(text), ErrorCode::InvalidMessage, "{text}");
    }
}

#[test]
fn the_id_is_echoed_even_when_the_rest_is_wrong() {
    let rejection = parse(r#"{"type":9,"id":"abc"}"#, &LIMITS).unwrap_err();
    assert_eq!(rejection.id.unwrap().get(), r#""abc""#);
    let rejection = parse(r#"{"type":"join_room","payload":{},"id":17}"#, &LIMITS).unwrap_err();
    assert_eq!(rejection.id.unwrap().get(), "17");
}

#[test]
fn content_length_is_counted_in_characters_at_the_limit() {
    let at_limit = r#"{"type":"broadcast","payload":{"content":"éééééééééé"}}"#;
    assert!(matches!(ok(at_limit).command, Command::Broadcast { .. }));
    let over = r#"{"type":"broadcast","payload":{"content":"ééééééééééé"}}"#;
    assert_eq!(code(over), ErrorCode::MessageTooLarge);
    let over_object = r#"{"type":"message","payload":{"room":"r","content":{"k":"vvvvvv"}}}"#;
    assert_eq!(code(over_object), ErrorCode::MessageTooLarge);
}

#[test]
fn unknown_types_are_left_to_the_caller() {
    let Command::Other { kind, payload } = ok(r#"{"type":"typing","payload":{"on":true}}"#).command
    else {
        panic!("not other");
    };
    assert_eq!(kind, "typing");
    assert_eq!(payload.unwrap().get(), r#"{"on":true}"#);
}

#[test]
fn ping_keeps_its_payload_and_null_means_absent() {
    let Command::Ping { payload } = ok(r#"{"type":"ping","payload":{"timestamp":5}}"#).command
    else {
        panic!("not ping");
    };
    assert_eq!(payload.unwrap().get(), r#"{"timestamp":5}"#);
    let Command::Ping { payload } = ok(r#"{"type":"ping","payload":null,"id":null}"#).command
    else {
        panic!("not ping");
    };
    assert!(payload.is_none());
}

#[test]
fn channel_commands_take_names_and_patterns() {
    let Command::Subscribe {
        channel,
        since: None,
    } = ok(r#"{"type":"subscribe","payload":{"channel":"room:*"}}"#).command
    else {
        panic!("not subscribe");
    };
    assert!(matches!(channel, ChannelSpec::Prefix(_)));
    let Command::Publish { channel, data } =
        ok(r#"{"type":"publish","payload":{"channel":"event:login","data":{"u":1}}}"#).command
    else {
        panic!("not publish");
    };
    assert_eq!(channel.as_str(), "event:login");
    assert_eq!(data.get(), r#"{"u":1}"#);
    assert_eq!(
        code(r#"{"type":"publish","payload":{"channel":"room:*","data":1}}"#),
        ErrorCode::InvalidMessage,
        "no publishing to a pattern"
    );
    assert_eq!(
        code(r#"{"type":"publish","payload":{"channel":"c"}}"#),
        ErrorCode::InvalidMessage
    );
    assert_eq!(
        code(r#"{"type":"publish","payload":{"channel":"c","data":"12345678901"}}"#),
        ErrorCode::MessageTooLarge
    );
}

#[test]
fn presence_takes_a_status_and_bounded_metadata() {
    let Command::Presence { status, metadata } =
        ok(r#"{"type":"presence","payload":{"status":"away","metadata":{"d":"web"}}}"#).command
    else {
        panic!("not presence");
    };
    assert_eq!(status, Status::Away);
    assert_eq!(metadata.unwrap().get(), r#"{"d":"web"}"#);
    assert_eq!(
        code(r#"{"type":"presence","payload":{"status":"busy"}}"#),
        ErrorCode::InvalidMessage
    );
    assert_eq!(
        code(
            r#"{"type":"presence","payload":{"status":"online","metadata":{"k":"1234567890123"}}}"#
        ),
        ErrorCode::MessageTooLarge
    );
}

#[test]
fn joins_and_subscriptions_carry_an_optional_position() {
    let Command::JoinRoom { since, .. } =
        ok(r#"{"type":"join_room","payload":{"room":"r","since":{"offset":7,"epoch":"e1"}}}"#)
            .command
    else {
        panic!("not a join");
    };
    assert_eq!(
        since,
        Some(StreamPosition {
            offset: 7,
            epoch: "e1".into()
        })
    );
    let Command::Subscribe { since, .. } =
        ok(r#"{"type":"subscribe","payload":{"channel":"news","since":null}}"#).command
    else {
        panic!("not a subscribe");
    };
    assert_eq!(since, None, "null is no position");
    let long_epoch = "e".repeat(switchboard_protocol::MAX_EPOCH_LEN + 1);
    for since in [
        r#"{"offset":-1,"epoch":"e1"}"#.to_owned(),
        r#"{"offset":"7","epoch":"e1"}"#.to_owned(),
        r#"{"offset":7}"#.to_owned(),
        r#"[7,"e1"]"#.to_owned(),
        r#""7:e1""#.to_owned(),
        format!(r#"{{"offset":7,"epoch":"{long_epoch}"}}"#),
    ] {
        let join = format!(r#"{{"type":"join_room","payload":{{"room":"r","since":{since}}}}}"#);
        assert_eq!(code(&join), ErrorCode::InvalidMessage, "{since}");
        let subscribe =
            format!(r#"{{"type":"subscribe","payload":{{"channel":"c","since":{since}}}}}"#);
        assert_eq!(code(&subscribe), ErrorCode::InvalidMessage, "{since}");
    }
}

#[test]
fn history_requests_name_one_stream_and_a_limit_in_range() {
    let Command::History(request) = ok(
        r#"{"type":"history","payload":{"room":"r","limit":100,"since":{"offset":0,"epoch":"e"}}}"#,
    )
    .command
    else {
        panic!("not a history request");
    };
    assert_eq!(request.stream, StreamId::Room(RoomId::from_trusted("r")));
    assert_eq!(request.limit, Some(100));
    assert_eq!(request.since.map(|since| since.offset), Some(0));
    let Command::History(request) =
        ok(r#"{"type":"history","payload":{"channel":"news"}}"#).command
    else {
        panic!("not a history request");
    };
    assert_eq!(
        (request.stream, request.limit, request.since),
        (
            StreamId::Channel(ChannelId::from_trusted("news")),
            None,
            None
        )
    );
    for payload in [
        r#"{}"#,
        r#"{"room":"r","channel":"c"}"#,
        r#"{"room":"r","limit":101}"#,
        r#"{"room":"r","limit":-1}"#,
        r#"{"room":"r","limit":1.5}"#,
        r#"{"room":"r","since":{"offset":-3,"epoch":"e"}}"#,
        r#"{"channel":"room:*"}"#,
        r#"{"room":"bad name"}"#,
    ] {
        let frame = format!(r#"{{"type":"history","payload":{payload}}}"#);
        assert_eq!(code(&frame), ErrorCode::InvalidMessage, "{payload}");
    }
    let off = ParseLimits {
        max_history: 0,
        ..LIMITS
    };
    let refused = parse(r#"{"type":"history","payload":{"room":"r"}}"#, &off).unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidMessage);
    assert!(
        refused.message.contains("history is off"),
        "{}",
        refused.message
    );
}
