//! What a `Deserialize` type reads, found by asking serde rather than by
//! reading the source: the field names a derived struct expects, which of
//! them may be absent, and what kind of value each one asks for. The
//! routing table describes handlers' path, query and body types with it, so
//! the OpenAPI test compares the document with what the code really reads.
//!
//! It works with any derived struct: the probe is a `Deserializer` that
//! records what the type asks of it (`deserialize_struct` hands over the
//! field names; each field's value asks for a bool, an integer, a float or
//! a string), and a field is required when leaving it out makes the type
//! report it missing (serde's own rule, `Option` and `#[serde(default)]`
//! included). Nothing here runs on a request path.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

/// The kind of value one field asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Boolean,
    Integer,
    Number,
    String,
    /// Anything else (a sequence, a map, an enum, a nested struct): not a
    /// value a query string or a path segment can carry.
    Other(&'static str),
}

impl ValueKind {
    /// The JSON Schema `type` that describes it.
    pub fn schema_type(self) -> &'static str {
        match self {
            ValueKind::Boolean => "boolean",
            ValueKind::Integer => "integer",
            ValueKind::Number => "number",
            ValueKind::String => "string",
            ValueKind::Other(what) => what,
        }
    }
}

/// How a type asks to be deserialized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A struct with named fields (serde's `deserialize_struct`).
    Struct(Vec<&'static str>),
    /// A tuple of this many values.
    Tuple(usize),
    /// One value.
    Scalar(ValueKind),
    /// Something else (a map, an internally tagged enum, ...).
    Other(&'static str),
}

/// One field of a struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// The type refuses to deserialize without it.
    pub required: bool,
    pub kind: ValueKind,
}

/// How `T` asks to be deserialized.
pub fn shape<T: DeserializeOwned>() -> Shape {
    let mut seen = None;
    // The recorder always stops the type with an error once it has seen
    // the first request; what was asked is the answer.
    let _ = T::deserialize(ShapeRecorder { seen: &mut seen });
    seen.unwrap_or(Shape::Other("nothing asked"))
}

/// Every field of the struct `T` with whether it is required and the kind
/// of value it takes; an error when `T` is not a struct of plain values.
pub fn fields<T: DeserializeOwned>() -> Result<Vec<Field>, String> {
    let names = match shape::<T>() {
        Shape::Struct(names) => names,
        other => return Err(format!("not a struct with named fields: {other:?}")),
    };
    // Every field present: each one's value records its kind.
    let mut kinds = vec![None; names.len()];
    T::deserialize(StructInput {
        names: &names,
        skip: None,
        kinds: &mut kinds,
    })
    .map_err(|e| format!("with every field present: {e}"))?;
    let mut fields = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let mut ignored = vec![None; names.len()];
        let required = match T::deserialize(StructInput {
            names: &names,
            skip: Some(index),
            kinds: &mut ignored,
        }) {
            Ok(_) => false,
            Err(ProbeError::Missing(missing)) if missing == *name => true,
            Err(e) => return Err(format!("without `{name}`: {e}")),
        };
        let kind = kinds[index].unwrap_or(ValueKind::Other("never read"));
        fields.push(Field {
            name,
            required,
            kind,
        });
    }
    Ok(fields)
}

#[derive(Debug)]
enum ProbeError {
    /// The type reported this field missing.
    Missing(&'static str),
    /// The recorder has what it wanted.
    Stop,
    Other(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Missing(name) => write!(f, "missing field `{name}`"),
            ProbeError::Stop => f.write_str("stopped"),
            ProbeError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<M: fmt::Display>(message: M) -> Self {
        ProbeError::Other(message.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        ProbeError::Missing(field)
    }
}

/// Records the first thing a type asks for, then stops it.
struct ShapeRecorder<'a> {
    seen: &'a mut Option<Shape>,
}

impl ShapeRecorder<'_> {
    fn record<V>(self, shape: Shape) -> Result<V, ProbeError> {
        *self.seen = Some(shape);
        Err(ProbeError::Stop)
    }
}

impl<'de> de::Deserializer<'de> for ShapeRecorder<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Other("any"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        self.record(Shape::Struct(fields.to_vec()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Tuple(len))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        _: V,
    ) -> Result<V::Value, ProbeError> {
        self.record(Shape::Tuple(len))
    }

    fn deserialize_str<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Scalar(ValueKind::String))
    }

    fn deserialize_string<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Scalar(ValueKind::String))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Scalar(ValueKind::Boolean))
    }

    fn deserialize_u64<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Scalar(ValueKind::Integer))
    }

    fn deserialize_u32<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Scalar(ValueKind::Integer))
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Other("map"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        self.record(Shape::Other("enum"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        self.record(Shape::Other("option"))
    }

    forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u128 f32 f64 char bytes byte_buf unit
        unit_struct newtype_struct seq identifier ignored_any
    }
}

/// A struct's fields as a map, every one present except `skip`; each value
/// records in `kinds` what it was asked for.
struct StructInput<'a> {
    names: &'a [&'static str],
    skip: Option<usize>,
    kinds: &'a mut [Option<ValueKind>],
}

impl<'de> de::Deserializer<'de> for StructInput<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_map(Entries {
            input: self,
            next: 0,
            current: None,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct Entries<'a> {
    input: StructInput<'a>,
    next: usize,
    current: Option<usize>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        if self.input.skip == Some(self.next) {
            self.next += 1;
        }
        let Some(name) = self.input.names.get(self.next) else {
            return Ok(None);
        };
        self.current = Some(self.next);
        self.next += 1;
        seed.deserialize(de::value::StrDeserializer::<ProbeError>::new(name))
            .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        let slot = self
            .current
            .take()
            .and_then(|index| self.input.kinds.get_mut(index))
            .ok_or_else(|| ProbeError::Other("a value without its key".into()))?;
        seed.deserialize(ValueProbe { kind: slot })
    }
}

/// One field's value: answers what it is asked with a plausible value and
/// records the kind asked for (through an `Option`, the inner kind).
struct ValueProbe<'a> {
    kind: &'a mut Option<ValueKind>,
}

impl ValueProbe<'_> {
    fn record(&mut self, kind: ValueKind) {
        self.kind.get_or_insert(kind);
    }
}

macro_rules! probe_integers {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
            self.record(ValueKind::Integer);
            visitor.visit_u8(1)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ValueProbe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        // A query string or a path segment is text.
        self.record(ValueKind::String);
        visitor.visit_str("1")
    }

    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::Boolean);
        visitor.visit_bool(true)
    }

    probe_integers!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128
    );

    fn deserialize_f32<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::Number);
        visitor.visit_f32(1.0)
    }

    fn deserialize_f64<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::Number);
        visitor.visit_f64(1.0)
    }

    fn deserialize_char<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::String);
        visitor.visit_char('1')
    }

    fn deserialize_str<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::String);
        visitor.visit_str("1")
    }

    fn deserialize_string<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::String);
        visitor.visit_str("1")
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, _: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::Other("array"));
        Err(ProbeError::Other("a sequence".into()))
    }

    fn deserialize_map<V: Visitor<'de>>(mut self, _: V) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::Other("object"));
        Err(ProbeError::Other("a map".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::Other("object"));
        Err(ProbeError::Other("a nested struct".into()))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        self.record(ValueKind::Other("enum"));
        Err(ProbeError::Other("an enum".into()))
    }

    forward_to_deserialize_any! {
        bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    #[serde(deny_unknown_fields)]
    struct Query {
        sku: String,
        lat: f64,
        radius_km: Option<f64>,
        limit: Option<usize>,
        pickup_only: Option<bool>,
        #[serde(default)]
        page: u32,
        #[serde(rename = "from")]
        since: Option<u64>,
    }

    #[test]
    fn fields_of_a_struct_with_kinds_and_requiredness() {
        let fields = fields::<Query>().expect("a struct");
        let summary: Vec<_> = fields
            .iter()
            .map(|f| (f.name, f.required, f.kind))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("sku", true, ValueKind::String),
                ("lat", true, ValueKind::Number),
                ("radius_km", false, ValueKind::Number),
                ("limit", false, ValueKind::Integer),
                ("pickup_only", false, ValueKind::Boolean),
                ("page", false, ValueKind::Integer),
                ("from", false, ValueKind::Integer),
            ]
        );
    }

    #[test]
    fn shapes_of_path_types() {
        assert_eq!(shape::<String>(), Shape::Scalar(ValueKind::String));
        assert_eq!(shape::<(String, String)>(), Shape::Tuple(2));
        assert_eq!(shape::<u64>(), Shape::Scalar(ValueKind::Integer));
        assert_eq!(
            shape::<std::collections::HashMap<String, String>>(),
            Shape::Other("map")
        );
        assert!(fields::<String>().is_err());
    }
}
