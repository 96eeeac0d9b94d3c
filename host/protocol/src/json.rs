//! JSON text made once, where the value is: what a JSON column or an audit payload stores.
//!
//! Values are written straight from their types (`serde_json::to_string`, fields in
//! declaration order) on the task that made them, so the committer — one writer for the whole
//! process — only copies text. The audit chain and the decision digests hash the stored text
//! itself, never a re-serialization, so the text needs no canonical key order to verify.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// A JSON document as text. Serialized with serde_json it is written verbatim, and read back
/// (`from_str`, `from_slice`) it is kept verbatim: a recorded answer is stored as it was
/// given, without a value tree in between.
#[derive(Clone, Debug)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// `value` as JSON text. The types stored serialize without error (no maps with
    /// non-string keys, no failing `Serialize`); should one ever fail, the text says so (a
    /// JSON string) instead of the host panicking mid-commit.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Self(raw),
            Err(e) => Self::message(&format!("not serializable: {e}")),
        }
    }

    /// A JSON string.
    fn message(text: &str) -> Self {
        match serde_json::value::to_raw_value(text) {
            Ok(raw) => Self(raw),
            // A `&str` always serializes; `null` keeps the type total.
            Err(_) => Self(RawValue::NULL.to_owned()),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Bytes of the text.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Never: the shortest JSON document (`0`) has a byte.
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// The value, parsed back (for comparisons and rare readers).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }

    /// Decodes the text as `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl Default for JsonText {
    /// `null`.
    fn default() -> Self {
        Self(RawValue::NULL.to_owned())
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for JsonText {}

impl From<serde_json::Value> for JsonText {
    fn from(value: serde_json::Value) -> Self {
        Self::of(&value)
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JsonText {
    /// As the JSON value it holds (not as a string of JSON).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    /// Any JSON value, kept as its text. Needs a serde_json text deserializer (`from_str`,
    /// `from_slice`, `from_reader`); `from_value` has no text to keep and refuses.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Record<'a> {
        zeta: u32,
        alpha: &'a str,
        nested: Option<Vec<f64>>,
    }

    #[test]
    fn text_is_the_value_written_directly_and_parses_back_to_the_same_value() {
        let r = Record {
            zeta: 7,
            alpha: "a \"quoted\" \u{1b}[31m line\n",
            nested: Some(vec![0.1, 1e-7, 3.0]),
        };
        let text = JsonText::of(&r);
        assert_eq!(text.as_str(), serde_json::to_string(&r).unwrap());
        assert!(text.as_str().starts_with("{\"zeta\":7,"), "{text}");
        assert_eq!(text.to_value(), serde_json::to_value(&r).unwrap());
        let from_value = JsonText::from(serde_json::json!({"b": 1, "a": [true, null]}));
        assert_eq!(from_value.as_str(), r#"{"a":[true,null],"b":1}"#);
        assert_eq!(
            serde_json::to_string(&from_value).unwrap(),
            from_value.as_str()
        );
        // Inside a record: written verbatim, read back verbatim.
        #[derive(Serialize, Deserialize)]
        struct Outer {
            call: u32,
            result: JsonText,
        }
        let outer = Outer {
            call: 1,
            result: text.clone(),
        };
        let written = serde_json::to_string(&outer).unwrap();
        assert_eq!(written, format!("{{\"call\":1,\"result\":{text}}}"));
        let read: Outer = serde_json::from_str(&written).unwrap();
        assert_eq!(read.result.as_str(), text.as_str());
        assert_eq!(read.result.len(), text.as_str().len());
    }

    #[test]
    fn a_value_that_cannot_serialize_becomes_a_message_not_a_panic() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 2u8);
        let text = JsonText::of(&map);
        let value = text.to_value();
        let message = value.as_str().unwrap_or_default();
        assert!(message.starts_with("not serializable: "), "{text}");
    }
}
