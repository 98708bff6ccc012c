//! The answers each proxy accepts and refuses.

use super::*;
use crate::proxy::MAX_MESSAGE_CHARS;

const MAX_NAME: usize = 128;

#[test]
fn a_connect_result_gives_the_user_and_the_permissions_of_a_token() {
    let body = br#"{"result":{"user":"alice","channels":["news:*"],"broadcast":true,"extra":1}}"#;
    let ConnectVerdict::Allowed { user, grants } = ConnectVerdict::parse(body, MAX_NAME).unwrap()
    else {
        panic!("not allowed");
    };
    assert_eq!(user.as_str(), "alice");
    assert!(grants.may_broadcast());
    let news = crate::ids::ChannelId::from_trusted("news:1");
    assert!(grants.may_publish(&news));
}

#[test]
fn connect_refusals_carry_a_status_or_a_close_code_in_range() {
    let refused = ConnectVerdict::parse(br#"{"error":{"code":403,"message":"banned"}}"#, MAX_NAME);
    assert!(matches!(
        refused,
        Ok(ConnectVerdict::Refused { status: StatusCode::FORBIDDEN, ref message }) if message == "banned"
    ));
    let default = ConnectVerdict::parse(br#"{"error":{}}"#, MAX_NAME);
    assert!(matches!(
        default,
        Ok(ConnectVerdict::Refused {
            status: StatusCode::UNAUTHORIZED,
            ..
        })
    ));
    for code in [1008, 4000, 4999] {
        let body = format!(r#"{{"disconnect":{{"code":{code},"reason":"bye"}}}}"#);
        assert!(matches!(
            ConnectVerdict::parse(body.as_bytes(), MAX_NAME),
            Ok(ConnectVerdict::Disconnect { code: c, .. }) if c == code
        ));
    }
    for code in [1000, 1011, 3999, 5000] {
        let body = format!(r#"{{"disconnect":{{"code":{code}}}}}"#);
        assert!(matches!(
            ConnectVerdict::parse(body.as_bytes(), MAX_NAME),
            Err(ProxyError::Invalid(_))
        ));
    }
    assert!(matches!(
        ConnectVerdict::parse(br#"{"error":{"code":500}}"#, MAX_NAME),
        Err(ProxyError::Invalid(_))
    ));
}

#[test]
fn answers_that_are_not_the_documented_shape_are_refused() {
    for body in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"result":{},"error":{}}"#,
        br#"{"result":{"user":""}}"#,
        br#"{"result":{"rooms":["*"]}}"#,
        br#"{"result":{"user":"a","rooms":["a*b"]}}"#,
    ] {
        assert!(
            ConnectVerdict::parse(body, MAX_NAME).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(StreamVerdict::parse(br#"{"disconnect":{"code":4000}}"#, MAX_NAME).is_err());
}

#[test]
fn messages_are_bounded_and_unknown_rpc_codes_become_internal() {
    let long = "é".repeat(MAX_MESSAGE_CHARS + 50);
    let body = format!(r#"{{"error":{{"message":"{long}"}}}}"#);
    let Ok(StreamVerdict::Refused(message)) = StreamVerdict::parse(body.as_bytes(), MAX_NAME)
    else {
        panic!("not refused");
    };
    assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
    let rpc = RpcVerdict::parse(br#"{"error":{"code":"TEAPOT","message":"x"}}"#, MAX_NAME);
    assert!(matches!(
        rpc,
        Ok(RpcVerdict::Error {
            code: ErrorCode::Internal,
            ..
        })
    ));
    let rpc = RpcVerdict::parse(br#"{"error":{"code":"FORBIDDEN"}}"#, MAX_NAME);
    assert!(matches!(
        rpc,
        Ok(RpcVerdict::Error {
            code: ErrorCode::Forbidden,
            ..
        })
    ));
    let rpc = RpcVerdict::parse(br#"{"result":null}"#, MAX_NAME).unwrap();
    assert!(matches!(rpc, RpcVerdict::Result(raw) if raw.get() == "null"));
}
