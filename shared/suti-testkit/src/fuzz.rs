//! Damaging valid encodings for property-based fuzzing: a decoder fed a real message, image or
//! request with bytes flipped, cut, inserted or repeated meets the inputs a hostile or broken sender
//! produces, close to its real code paths (random bytes rarely get past the first check).

use proptest::prelude::*;

/// One way to damage an encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Overwrite the byte at (position mod length).
    Set(usize, u8),
    /// Keep only the first (position mod length) bytes.
    Truncate(usize),
    /// Insert bytes at (position mod length).
    Insert(usize, Vec<u8>),
    /// Repeat a slice, so that length prefixes point past or into other fields.
    Duplicate(usize, usize),
}

/// A strategy for one mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

/// `bytes` with `mutations` applied in order.
pub fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Set(i, b) => {
                if !bytes.is_empty() {
                    bytes[i % len] = *b;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            Mutation::Insert(i, b) => {
                let at = (i % len).min(bytes.len());
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Duplicate(i, n) => {
                let from = (i % len).min(bytes.len());
                let to = (from + n).min(bytes.len());
                let piece = bytes[from..to].to_vec();
                bytes.splice(to..to, piece);
            }
        }
    }
    bytes
}

/// The case count for a fuzzing property: `default`, or `PROPTEST_CASES` for a longer run.
pub fn fuzz_config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}
