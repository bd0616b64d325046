//! Fields of request bodies, read the way the reference's serializers (DRF) read them.
//!
//! DRF checks every field of a body and answers all their problems at once
//! (`{"field": ["message"], ...}`), while a derived `Deserialize` stops at the first error with
//! serde's wording. A body struct therefore declares each field as [`Field<T>`]: reading one
//! never fails, it keeps whether the field was absent, `null`, a `T`, or a value of the wrong
//! kind with DRF's message ([`FromJson`]), and the handler turns the fields into its values,
//! collecting the messages in [`Problems`].

use crate::error::{AppError, AppResult, FieldErrors};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One field of a request body as it was sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    /// Not in the body.
    #[default]
    Absent,
    /// Sent as `null`.
    Null,
    /// Sent, and read as a `T`.
    Value(T),
    /// Sent, but not a `T`: DRF's message for it.
    Invalid(Invalid),
}

/// Why a sent value was refused: the message, and the path inside the field it concerns when
/// that is more precise than the field (`default_inputs.a.b.$ref`).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// `field.key...`, when the message is about a part of the field.
    pub at: Option<String>,
    /// The reference's message.
    pub message: String,
}

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Invalid { at: None, message }
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// A type a [`Field`] holds: read from the JSON value sent, with the reference's message when
/// the value is of the wrong kind or out of bounds.
pub trait FromJson: Sized {
    /// Reads `value` (never `null`: [`Field::Null`] stands for it).
    fn from_json(value: Value) -> Result<Self, Invalid>;
}

/// DRF's `CharField` message for a value that is not a string.
pub const NOT_A_STRING: &str = "Not a valid string.";

impl FromJson for String {
    fn from_json(value: Value) -> Result<Self, Invalid> {
        match value {
            Value::String(s) => Ok(s),
            _ => Err(NOT_A_STRING.into()),
        }
    }
}

impl<'de, T: FromJson> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Field::Null,
            v => match T::from_json(v) {
                Ok(t) => Field::Value(t),
                Err(message) => Field::Invalid(message),
            },
        })
    }
}

impl<T> Field<T> {
    /// `None` when absent; otherwise `Some` of the value (`None` for `null`) or the message.
    pub fn sent(self) -> Option<Result<Option<T>, Invalid>> {
        match self {
            Field::Absent => None,
            Field::Null => Some(Ok(None)),
            Field::Value(v) => Some(Ok(Some(v))),
            Field::Invalid(m) => Some(Err(m)),
        }
    }
}

/// DRF's message for a string longer than `max` characters.
pub fn too_long(max: usize) -> String {
    format!("Ensure this field has no more than {max} characters.")
}

impl Field<String> {
    /// A required string as DRF's `CharField(max_length=max)` without trimming: absent or
    /// `null` is "required", an empty string "blank".
    pub fn required(self, max: usize) -> Result<String, Invalid> {
        match self {
            Field::Absent | Field::Null => Err("This field is required.".into()),
            Field::Invalid(m) => Err(m),
            Field::Value(s) if s.is_empty() => Err("This field may not be blank.".into()),
            Field::Value(s) if s.chars().count() > max => Err(too_long(max).into()),
            Field::Value(s) => Ok(s),
        }
    }
}

/// The field errors of one body, in DRF's shape; the first message of a field is kept.
#[derive(Debug, Default)]
pub struct Problems(FieldErrors);

impl Problems {
    /// The value of `result`, or `None` after recording its message under `field` (or the
    /// more precise path the problem names).
    pub fn take<T, E: Into<Invalid>>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let Invalid { at, message } = e.into();
                self.add(at.as_deref().unwrap_or(field), message);
                None
            }
        }
    }

    /// Records `message` under `field` (unless the field already has one).
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_string())
            .or_insert_with(|| vec![message.into()]);
    }

    /// `Ok` when nothing was recorded, else the 400 with every field's message.
    pub fn finish(self) -> AppResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        a: Field<String>,
        #[serde(default)]
        b: Field<String>,
    }

    #[test]
    fn every_field_is_read_whatever_was_sent() {
        let body: Body = serde_json::from_value(json!({"a": 1})).unwrap();
        assert_eq!(body.a, Field::Invalid(NOT_A_STRING.into()));
        assert_eq!(body.b, Field::Absent);
        let body: Body = serde_json::from_value(json!({"a": null, "b": "x"})).unwrap();
        assert_eq!(body.a, Field::Null);
        assert_eq!(body.b, Field::Value("x".into()));
    }

    #[test]
    fn required_strings_follow_drf() {
        let body: Body = serde_json::from_value(json!({"a": "", "b": "toolong"})).unwrap();
        let mut p = Problems::default();
        assert_eq!(p.take("a", body.a.required(5)), None);
        assert_eq!(p.take("b", body.b.required(5)), None);
        assert_eq!(
            p.finish().unwrap_err().body(),
            json!({
                "a": ["This field may not be blank."],
                "b": ["Ensure this field has no more than 5 characters."],
            })
        );
        assert_eq!(
            Field::<String>::Absent.required(5).unwrap_err().message,
            "This field is required."
        );
        assert_eq!(Field::Value("ok".to_string()).required(5).unwrap(), "ok");
    }
}
