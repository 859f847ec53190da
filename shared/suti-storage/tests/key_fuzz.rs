//! Object keys built from untrusted input (a cluster id, a shard key from a message) cannot escape
//! their prefix: whatever the input, `ObjectKey::new` either refuses it or yields a key whose path,
//! resolved under a storage root, stays below the prefix. `PROPTEST_CASES` raises the case count.

use std::path::{Component, Path};

use proptest::prelude::*;
use suti_storage::ObjectKey;
use suti_testkit::fuzz::fuzz_config;

/// Pieces a hostile sender would combine: traversal, separators, encodings, control characters.
fn hostile_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("/".to_string()),
        Just("\\".to_string()),
        Just("%2e%2e".to_string()),
        Just("\0".to_string()),
        Just("~".to_string()),
        Just(":".to_string()),
        Just("C:".to_string()),
        Just("\u{202e}".to_string()),
        "[a-z0-9]{1,4}",
        any::<String>(),
    ]
}

fn untrusted() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_piece(), 1..8).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(fuzz_config(4096))]

    #[test]
    fn keys_from_untrusted_input_stay_under_their_prefix(input in untrusted()) {
        let prefix = "experts/c1";
        if let Ok(key) = ObjectKey::new(format!("{prefix}/{input}")) {
            let key = key.as_str();
            prop_assert!(key.starts_with("experts/c1/"), "{key:?}");
            let root = Path::new("/srv/suti-data");
            let path = root.join(key);
            prop_assert!(
                path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
                "{key:?} resolves to {path:?}"
            );
            prop_assert!(path.starts_with(root.join(prefix)), "{key:?}");
            prop_assert!(key.is_ascii() && !key.contains('\\') && !key.contains('\0'));
        }
    }

    #[test]
    fn a_key_is_refused_or_accepted_never_a_panic(input in any::<String>()) {
        let _ = ObjectKey::new(input);
    }
}
