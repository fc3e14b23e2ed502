//! Custom scalars.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Binary data as standard base64 (RFC 4648, with padding): Loro updates and version vectors.
#[derive(Clone, Debug)]
pub enum Base64 {
    /// Decoded, as received from a client.
    Bytes(Vec<u8>),
    /// Already encoded, as sent to clients (encoded once, shared by every subscriber).
    Text(std::sync::Arc<str>),
}

impl Base64 {
    /// The bytes (decoding when needed; `None` when the text is not base64).
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Self::Bytes(bytes) => Some(bytes),
            Self::Text(text) => STANDARD.decode(text.as_bytes()).ok(),
        }
    }
}

/// Binary data as standard base64 (RFC 4648 section 4, with padding): Loro updates.
#[Scalar(
    name = "Base64",
    specified_by_url = "https://www.rfc-editor.org/rfc/rfc4648#section-4"
)]
impl ScalarType for Base64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => STANDARD
                .decode(text.trim())
                .map(Self::Bytes)
                .map_err(|_| InputValueError::custom("not valid base64")),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Self::Bytes(bytes) => Value::String(STANDARD.encode(bytes)),
            Self::Text(text) => Value::String(text.to_string()),
        }
    }
}

/// A Loro version vector (for each peer, how many of its operations a document holds),
/// encoded by Loro (`VersionVector::encode`; `doc.oplogVersion().encode()` in loro-crdt),
/// then base64.
#[derive(Clone, Debug)]
pub struct EncodedVersionVector(pub Base64);

/// A Loro version vector (for each peer, how many of its operations a document holds):
/// the bytes of Loro's `VersionVector::encode` (`doc.oplogVersion().encode()` in
/// loro-crdt, decoded with `VersionVector.decode`) as standard base64.
#[Scalar(
    name = "VersionVector",
    specified_by_url = "https://docs.rs/loro/1.17.1/loro/struct.VersionVector.html#method.encode"
)]
impl ScalarType for EncodedVersionVector {
    fn parse(value: Value) -> InputValueResult<Self> {
        Base64::parse(value)
            .map(Self)
            .map_err(InputValueError::propagate)
    }

    fn to_value(&self) -> Value {
        self.0.to_value()
    }
}
