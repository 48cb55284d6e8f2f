//! [`Object`]: a request body that must be a JSON object. Without it, serde would accept a
//! JSON array as a struct (fields by position) and answer `[1, 2]` with a puzzling
//! "invalid type: integer, expected a string"; with it the client reads
//! "invalid type: sequence, expected a JSON object".

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A `T` that was written as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<T> Object<T> {
    /// The inner value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReserveRequest;

    #[test]
    fn arrays_are_not_objects() {
        let err = serde_json::from_str::<Object<ReserveRequest>>("[1, 2]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid type: sequence, expected a JSON object"),
            "{err}"
        );
    }

    #[test]
    fn objects_keep_their_field_errors() {
        let err = serde_json::from_str::<Object<ReserveRequest>>(r#"{"lease_id":"x","extra":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
        let ok = serde_json::from_str::<Object<ReserveRequest>>(
            r#"{"lease_id":"x","requirements":[{"key":"k","amount":1}]}"#,
        )
        .unwrap();
        assert_eq!(ok.into_inner().requirements.len(), 1);
    }
}
