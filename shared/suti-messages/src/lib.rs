//! Wire types of the suti pipeline (architecture.md §4): one versioned payload struct per message
//! type, encoded as named MessagePack (`rmp_serde::to_vec_named`).
//!
//! This crate depends on serde and little else so that every service, tool and test can speak the
//! wire format without compiling the heavy parts of the system. Compatible changes add
//! `#[serde(default)]` fields; incompatible ones add a `v2` type beside the old one. The golden-bytes
//! tests in `tests/golden.rs` pin the encoding.

use serde::{Serialize, de::DeserializeOwned};

mod payloads;

pub use payloads::*;

/// The MIME type every message body carries.
pub const CONTENT_TYPE: &str = "application/msgpack";

/// A versioned pipeline payload with its wire type name (the AMQP `type` property and routing key).
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Wire type name, for example `cluster.mined.v1`.
    const TYPE: &'static str;
}

/// Every message type of the pipeline, in pipeline order.
pub const ALL_TYPES: [&str; 6] = [
    CrawlRequestV1::TYPE,
    ClusterMinedV1::TYPE,
    ExpertTrainedV1::TYPE,
    CandidatesGeneratedV1::TYPE,
    ExamplesAcceptedV1::TYPE,
    ApprenticePublishedV1::TYPE,
];

/// Why a body could not be turned into a payload or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload could not be serialised.
    #[error("cannot encode {type_name}: {source}")]
    Encode {
        /// Wire type being encoded.
        type_name: &'static str,
        /// Underlying serialiser error.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// The body is not a valid payload of the expected type.
    #[error("cannot decode body as {type_name}: {source}")]
    Decode {
        /// Wire type that was expected.
        type_name: &'static str,
        /// Underlying deserialiser error.
        #[source]
        source: rmp_serde::decode::Error,
    },
}

/// Encodes a payload as named MessagePack (field names on the wire, so fields can be added).
pub fn encode<M: Message>(message: &M) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(message).map_err(|source| CodecError::Encode {
        type_name: M::TYPE,
        source,
    })
}

/// Decodes a body produced by [`encode`].
pub fn decode<M: Message>(body: &[u8]) -> Result<M, CodecError> {
    rmp_serde::from_slice(body).map_err(|source| CodecError::Decode {
        type_name: M::TYPE,
        source,
    })
}
