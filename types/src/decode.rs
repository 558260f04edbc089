//! Decoding a parsed JSON tree into the wire types, used by both ends: the
//! server reads every JSON request body through it, the dashboard every
//! answer.
//!
//! `serde_json::from_value` would do, but every derived `Deserialize` of a
//! struct has two ways in, a JSON object (`visit_map`) and a JSON array
//! (`visit_seq`), and serde_json takes both: `["array-token","admin"]` would
//! be a `CreateToken`. The wire contract only has objects with string keys.
//! This deserializer offers a struct only the object form, at every nesting
//! level, and a field name only as a string. That is also why the dashboard
//! uses it: the array and byte-string paths stay out of the wasm (about a
//! tenth of its code). Anything else a type can ask for (sequences, maps,
//! options, enums, numbers, internally tagged enums through
//! `deserialize_any`) behaves as with serde_json.
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why a JSON tree did not fit the type asked for.
#[derive(Debug)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError(msg.to_string())
    }

    // serde's own messages print the unexpected value with `Unexpected`'s
    // `Display`, whose float case alone brings Rust's float formatting into
    // the wasm; these say the same without it.
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DecodeError(format!(
            "invalid type: {}, expected {exp}",
            unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DecodeError(format!(
            "invalid value: {}, expected {exp}",
            unexpected(&unexp)
        ))
    }
}

/// What serde's `Unexpected` says of itself, but a float is only "a number".
fn unexpected(u: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match *u {
        U::Bool(b) => format!("boolean `{b}`"),
        U::Unsigned(n) => format!("integer `{n}`"),
        U::Signed(n) => format!("integer `{n}`"),
        U::Float(_) => "floating point number".into(),
        U::Char(c) => format!("character `{c}`"),
        U::Str(s) => format!("string \"{s}\""),
        U::Bytes(_) => "byte array".into(),
        U::Unit => "unit value".into(),
        U::Option => "Option value".into(),
        U::NewtypeStruct => "newtype struct".into(),
        U::Seq => "sequence".into(),
        U::Map => "map".into(),
        U::Enum => "enum".into(),
        U::UnitVariant => "unit variant".into(),
        U::NewtypeVariant => "newtype variant".into(),
        U::TupleVariant => "tuple variant".into(),
        U::StructVariant => "struct variant".into(),
        U::Other(other) => other.into(),
    }
}

/// Decodes `value` as a `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    T::deserialize(De(value))
}

/// The deserializer behind [`from_value`], for wrappers that need one (the
/// server wraps it in `serde_path_to_error` to name the offending field).
pub struct De(Value);

impl De {
    pub fn new(value: Value) -> Self {
        De(value)
    }

    /// What the value is, for error messages.
    fn kind(&self) -> &'static str {
        match self.0 {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    fn expected(&self, what: &str) -> DecodeError {
        DecodeError(format!("expected {what}, found {}", self.kind()))
    }
}

/// One way to hand a number to a visitor, shared by every numeric type. A
/// number written with a fraction of zero (`80.0`) is that integer, as in
/// JSON Schema: only a real fraction is a float to an integer field.
fn visit_number<'de, V: Visitor<'de>>(n: Number, visitor: V) -> Result<V::Value, DecodeError> {
    if let Some(u) = n.as_u64() {
        visitor.visit_u64(u)
    } else if let Some(i) = n.as_i64() {
        visitor.visit_i64(i)
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) {
            visitor.visit_u64(f as u64)
        } else if f.fract() == 0.0 && (-9.2e18..0.0).contains(&f) {
            visitor.visit_i64(f as i64)
        } else {
            visitor.visit_f64(f)
        }
    }
}

macro_rules! forward_to_number {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            match self.0 {
                Value::Number(n) => visit_number(n, visitor),
                _ => Err(self.expected("a number")),
            }
        }
    )*};
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            self.deserialize_any(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => visit_number(n, visitor),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
        }
    }

    forward_to_number! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    }

    forward_to_any! { deserialize_bytes deserialize_byte_buf }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(b),
            _ => Err(self.expected("a boolean")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::String(s) => visitor.visit_string(s),
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.expected("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
            _ => Err(self.expected("an array")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
            _ => Err(self.expected("an object")),
        }
    }

    /// Objects only: the array form of a struct is never sent.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_map(visitor)
    }

    /// Externally tagged enums: `"variant"` or `{"variant": value}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let what = "a string or an object with one key";
        match self.0 {
            Value::String(tag) => visitor.visit_enum(Variant { tag, value: None }),
            Value::Object(map) if map.len() == 1 => match map.into_iter().next() {
                Some((tag, value)) => visitor.visit_enum(Variant {
                    tag,
                    value: Some(value),
                }),
                None => Err(DecodeError(format!("expected {what}"))),
            },
            _ => Err(self.expected(what)),
        }
    }

    /// Field names and variant tags: strings only.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::String(s) => visitor.visit_str(&s),
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        self.0.next().map(|v| seed.deserialize(De(v))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Fields {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl Fields {
    fn new(map: Map<String, Value>) -> Self {
        Fields {
            entries: map.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Fields {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(De(Value::String(key))).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        match self.value.take() {
            Some(value) => seed.deserialize(De(value)),
            None => Err(DecodeError("a value was asked for before its key".into())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Variant {
    tag: String,
    value: Option<Value>,
}

impl<'de> EnumAccess<'de> for Variant {
    type Error = DecodeError;
    type Variant = Payload;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Payload), DecodeError> {
        let tag = seed.deserialize(De(Value::String(self.tag)))?;
        Ok((tag, Payload(self.value)))
    }
}

struct Payload(Option<Value>);

impl<'de> VariantAccess<'de> for Payload {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<(), DecodeError> {
        match self.0 {
            None | Some(Value::Null) => Ok(()),
            Some(other) => Err(De(other).expected("no value for a unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        seed.deserialize(De(self.0.unwrap_or(Value::Null)))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_seq(De(self.0.unwrap_or(Value::Null)), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        de::Deserializer::deserialize_map(De(self.0.unwrap_or(Value::Null)), visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{DeploymentEvent, DeploymentState, Service},
        ApiErrorBody, ErrorCode, Port,
    };
    use serde_json::json;

    /// DTOs decode here as they do with serde_json: a service with nested
    /// structs, maps, lists, options, enums and validated newtypes.
    #[test]
    fn decodes_what_serde_json_decodes() {
        let wire = json!({
            "id": "8d7f1c1e-33a5-4b7e-9a34-0d1c2b3a4f5e",
            "environment_id": "6b1e8f4c-0f0e-4d7a-8a1b-2c3d4e5f6a7b",
            "project_id": "1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
            "name": "web",
            "spec": {
                "image": "ghcr.io/acme/web:1.4.2",
                "command": ["httpd", "-f"],
                "ports": [{"container": 80, "published": 8080, "protocol": "tcp"}],
                "env": {"LOG_LEVEL": "info"},
                "health_check": {"path": "/health", "port": 80, "interval_secs": 5,
                                 "timeout_secs": 2, "retries": 3},
                "replicas": 2
            },
            "created_at": "2026-11-30T09:00:00Z",
            "updated_at": "2026-11-30T09:05:00.123Z"
        });
        let reference: Service = serde_json::from_value(wire.clone()).expect("serde_json");
        let decoded: Service = from_value(wire).expect("decode");
        assert_eq!(decoded, reference);
        assert_eq!(decoded.spec.ports[0].published.map(Port::get), Some(8080));
    }

    #[test]
    fn unknown_fields_and_missing_options_are_fine() {
        let e: ApiErrorBody =
            from_value(json!({"error": "not_found", "message": "gone", "extra": [1, {"a": 2}]}))
                .expect("decode");
        assert_eq!(e.error, ErrorCode::NotFound);
        assert_eq!(e.field, None);
    }

    #[test]
    fn internally_tagged_enums_decode() {
        let e: DeploymentEvent =
            from_value(json!({"type": "state", "state": "succeeded", "reason": null}))
                .expect("decode");
        assert_eq!(
            e,
            DeploymentEvent::State {
                state: DeploymentState::Succeeded,
                reason: None
            }
        );
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let as_array = from_value::<ApiErrorBody>(json!(["not_found", "gone"]));
        assert_eq!(
            as_array.map(|_| ()).map_err(|e| e.to_string()),
            Err("expected an object, found an array".to_owned())
        );
        assert!(
            from_value::<ApiErrorBody>(json!({"error": "no_such_code", "message": "x"})).is_err()
        );
        assert!(from_value::<ApiErrorBody>(json!({"message": "x"})).is_err());
        assert!(from_value::<Port>(json!(70000)).is_err());
        assert!(from_value::<Port>(json!("80")).is_err());
        assert_eq!(from_value::<Port>(json!(80)).map(Port::get).ok(), Some(80));
        assert!(from_value::<u8>(json!(-1)).is_err());
        assert_eq!(from_value::<f64>(json!(0.5)).ok(), Some(0.5));
        // An integral number written with a zero fraction is that integer.
        assert_eq!(from_value::<u64>(json!(80.0)).ok(), Some(80));
        assert_eq!(from_value::<i32>(json!(-3.0)).ok(), Some(-3));
        assert!(from_value::<u64>(json!(80.5)).is_err());
        assert_eq!(from_value::<Vec<u32>>(json!([1, 2])).ok(), Some(vec![1, 2]));
        assert_eq!(from_value::<Option<u32>>(json!(null)).ok(), Some(None));
    }

    #[test]
    fn messages_name_the_unexpected_value_like_serde() {
        let msg = |r: Result<u32, DecodeError>| r.map_err(|e| e.to_string()).err();
        assert_eq!(
            msg(from_value(json!(1.5))),
            Some("invalid type: floating point number, expected u32".to_owned())
        );
        assert_eq!(
            msg(from_value(json!(-3))),
            Some("invalid value: integer `-3`, expected u32".to_owned())
        );
        let role = from_value::<crate::Role>(json!("king")).map(|_| ());
        assert!(role
            .map_err(|e| e.to_string())
            .is_err_and(|e| e.starts_with("unknown variant `king`")),);
    }
}
