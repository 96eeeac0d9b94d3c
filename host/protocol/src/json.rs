//! JSON text made once, where the value is: what a JSON column or an audit payload stores.
//!
//! Values are written straight from their types (`serde_json::to_string`, fields in
//! declaration order) on the task that made them, so the committer — one writer for the whole
//! process — only copies text. The audit chain and the decision digests hash the stored text
//! itself, never a re-serialization, so the text needs no canonical key order to verify.

use serde::Serialize;
use std::fmt;

/// A JSON document as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JsonText(String);

impl JsonText {
    /// `value` as JSON text. The types stored serialize without error (no maps with
    /// non-string keys, no failing `Serialize`); should one ever fail, the text says so (a
    /// JSON string) instead of the host panicking mid-commit.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_string(value) {
            Ok(text) => Self(text),
            Err(e) => Self(serde_json::Value::String(format!("not serializable: {e}")).to_string()),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The value, parsed back (for tests and rare readers).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

impl From<serde_json::Value> for JsonText {
    fn from(value: serde_json::Value) -> Self {
        Self(value.to_string())
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for JsonText {
    /// As the JSON value it holds (not as a string of JSON).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
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
