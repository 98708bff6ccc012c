//! The rewrite's difference and its transactions (the model test of `indexes_tests.rs` runs
//! rewrites against a real Redis).

use std::collections::HashMap;

use super::*;
use crate::cluster::redis::keys::Keys;

fn fields(items: &[(&str, &str)]) -> Vec<(String, String)> {
    (items.iter())
        .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn the_difference_sets_what_is_absent_or_other_and_deletes_what_is_not_wanted() {
    let held: HashMap<String, String> = fields(&[
        ("u:ann", "1"),
        ("u:ben", "2"),
        ("m:hall\nann", "1"),
        ("p:ben", "{}"),
    ])
    .into_iter()
    .collect();
    let wanted = fields(&[("u:ann", "1"), ("u:ben", "3"), ("c:news", "1")]);
    let mut changes = difference(held, wanted);
    changes.delete.sort();
    assert_eq!(changes.set, fields(&[("u:ben", "3"), ("c:news", "1")]));
    assert_eq!(changes.delete, ["m:hall\nann", "p:ben"]);

    let same = fields(&[("u:ann", "1")]);
    let unchanged = difference(same.clone().into_iter().collect(), same);
    assert_eq!(unchanged, FieldChanges::default(), "nothing to write");
}

#[test]
fn a_presence_seen_later_is_the_same_one_another_status_or_metadata_is_not() {
    let online = |last_seen: u64, metadata: &str| {
        format!(r#"{{"userId":"ann","status":"online","lastSeen":{last_seen}{metadata}}}"#)
    };
    let held: HashMap<String, String> = [("p:ann".to_owned(), online(1_000, ""))].into();
    let later = vec![("p:ann".to_owned(), online(2_000, ""))];
    assert_eq!(difference(held.clone(), later), FieldChanges::default());

    let away = vec![(
        "p:ann".to_owned(),
        r#"{"userId":"ann","status":"away","lastSeen":2000}"#.to_owned(),
    )];
    assert_eq!(difference(held.clone(), away.clone()).set, away);
    let typing = vec![(
        "p:ann".to_owned(),
        online(2_000, r#","metadata":{"typing":true}"#),
    )];
    assert_eq!(difference(held, typing.clone()).set, typing);
    let still_typing = vec![(
        "p:ann".to_owned(),
        online(3_000, r#","metadata":{"typing":true}"#),
    )];
    let held: HashMap<String, String> = typing.into_iter().collect();
    assert_eq!(difference(held, still_typing), FieldChanges::default());
    // Only a presence is read that way: another field's value is compared as it is.
    let held: HashMap<String, String> = [("u:ann".to_owned(), "1".to_owned())].into();
    let wanted = vec![("u:ann".to_owned(), "01".to_owned())];
    assert_eq!(difference(held, wanted.clone()).set, wanted);
}

#[test]
fn a_large_difference_goes_in_transactions_of_bounded_size() {
    let keys = Keys::new("t:", false);
    let node = NodeId::from_trusted("n1");
    let changes = FieldChanges {
        set: (0..2_500)
            .map(|n| (format!("u:user-{n}"), "1".to_owned()))
            .collect(),
        delete: (0..1_200).map(|n| format!("m:hall\nold-{n}")).collect(),
    };
    let mut pipe = redis::pipe();
    add_chunks(&keys, &mut pipe, &node, &changes, CHUNK_FIELDS);
    let names: Vec<String> = pipe
        .cmd_iter()
        .map(|cmd| {
            let name = cmd.args_iter().next();
            match name {
                Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            }
        })
        .collect();
    let transactions = names.iter().filter(|name| *name == "MULTI").count();
    // 2 500 sets in three, 1 200 deletes in two.
    assert_eq!(transactions, 5, "{names:?}");
    for cmd in pipe.cmd_iter() {
        // A command's arguments: its name, the key, and at most two per field (an EVAL adds its
        // script, the key count, the control prefix and the node).
        assert!(
            cmd.args_iter().count() <= 6 + 2 * CHUNK_FIELDS,
            "a command of {} arguments",
            cmd.args_iter().count()
        );
    }
}
