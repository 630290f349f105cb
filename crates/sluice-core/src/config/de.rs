//! A serde `Deserializer` over the positioned node tree, so that the
//! engine's settings and every component's options deserialize into plain
//! serde structs while their errors name the file:line:column of the
//! offending node. Structs reject unknown keys (with the closest expected
//! key as hint) even without `deny_unknown_fields`. Error messages never
//! quote scalar values, so secrets cannot leak through them. Touches
//! nothing but memory.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};

use super::node::{Key, Kind, Node};
use super::{closest_hint, ConfigError, Location};

/// A deserialization error, located by the innermost node that saw it.
#[derive(Debug)]
pub(crate) struct DeError {
    pub message: String,
    pub hint: Option<String>,
    pub location: Option<Location>,
    /// Raised by a scalar whose interpolation failed (already reported).
    pub silent: bool,
}

impl DeError {
    /// Marks an error raised by `node` itself when its interpolation failed.
    fn quiet_if_failed(mut self, node: &Node) -> DeError {
        if matches!(&node.kind, Kind::Scalar(s) if s.failed)
            && self.location.as_ref() == Some(&node.loc)
        {
            self.silent = true;
        }
        self
    }

    fn at(mut self, loc: &Location) -> DeError {
        if self.location.is_none() {
            self.location = Some(loc.clone());
        }
        self
    }

    pub fn into_config(self, fallback: &Location) -> ConfigError {
        ConfigError {
            location: self.location.unwrap_or_else(|| fallback.clone()),
            message: self.message,
            hint: self.hint,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// Describes an unexpected value without quoting it.
fn kind_of(u: &Unexpected) -> &'static str {
    match u {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a number",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit | Unexpected::Option => "nothing (null)",
        Unexpected::Seq => "a list",
        Unexpected::Map => "a mapping",
        _ => "a value",
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            hint: None,
            location: None,
            silent: false,
        }
    }

    fn invalid_type(unexp: Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {}", kind_of(&unexp)))
    }

    fn invalid_value(unexp: Unexpected, exp: &dyn de::Expected) -> Self {
        match unexp {
            Unexpected::Unsigned(n) => {
                Self::custom(format_args!("invalid value {n}: expected {exp}"))
            }
            Unexpected::Signed(n) => {
                Self::custom(format_args!("invalid value {n}: expected {exp}"))
            }
            u => Self::custom(format_args!(
                "invalid value ({}): expected {exp}",
                kind_of(&u)
            )),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown key `{field}`"),
            hint: closest_hint(field, expected.iter().copied()),
            location: None,
            silent: false,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown value `{variant}`"),
            hint: closest_hint(variant, expected.iter().copied()),
            location: None,
            silent: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing key `{field}`"))
    }
}

/// Deserializes one node.
pub(crate) struct NodeDe<'a>(pub &'a Node);

impl<'a> NodeDe<'a> {
    fn text(&self) -> Option<&'a str> {
        match &self.0.kind {
            Kind::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    fn unexpected(&self) -> Unexpected<'static> {
        match &self.0.kind {
            Kind::Null => Unexpected::Unit,
            Kind::Scalar(s) if s.plain && s.text.parse::<i64>().is_ok() => Unexpected::Signed(0),
            Kind::Scalar(s) if s.plain && parse_bool(&s.text).is_some() => Unexpected::Bool(false),
            Kind::Scalar(s) if s.plain && parse_float(&s.text).is_some() => Unexpected::Float(0.0),
            Kind::Scalar(_) => Unexpected::Str(""),
            Kind::Seq(_) => Unexpected::Seq,
            Kind::Map(_) => Unexpected::Map,
        }
    }

    fn wrong(&self, expected: &dyn de::Expected) -> DeError {
        <DeError as de::Error>::invalid_type(self.unexpected(), expected).at(&self.0.loc)
    }

    fn integer<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let loc = &self.0.loc;
        let r = match self.text().map(|t| t.replace('_', "")) {
            Some(t) => match (t.parse::<u64>(), t.parse::<i64>()) {
                (Ok(n), _) => v.visit_u64(n),
                (_, Ok(n)) => v.visit_i64(n),
                _ => Err(self.wrong(&v)),
            },
            None => Err(self.wrong(&v)),
        };
        r.map_err(|e: DeError| e.at(loc))
    }
}

macro_rules! ints {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> { self.integer(v) }
    )*};
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let loc = &self.0.loc;
        let r = match &self.0.kind {
            Kind::Null => v.visit_unit(),
            Kind::Scalar(s) if s.plain => {
                if let Ok(n) = s.text.parse::<u64>() {
                    v.visit_u64(n)
                } else if let Ok(n) = s.text.parse::<i64>() {
                    v.visit_i64(n)
                } else if let Some(b) = parse_bool(&s.text) {
                    v.visit_bool(b)
                } else if let Some(f) = parse_float(&s.text) {
                    v.visit_f64(f)
                } else {
                    v.visit_str(&s.text)
                }
            }
            Kind::Scalar(s) => v.visit_str(&s.text),
            Kind::Seq(items) => v.visit_seq(Seq(items.iter())),
            Kind::Map(entries) => v.visit_map(Map::new(entries)),
        };
        r.map_err(|e: DeError| e.at(loc))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match self.text().and_then(parse_bool) {
            Some(b) => v.visit_bool(b).map_err(|e: DeError| e.at(&self.0.loc)),
            None => Err(self.wrong(&v)),
        }
    }

    ints!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
          deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    fn deserialize_f32<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match self.text().and_then(parse_float) {
            Some(f) => v.visit_f64(f).map_err(|e: DeError| e.at(&self.0.loc)),
            None => Err(self.wrong(&v)),
        }
    }

    fn deserialize_char<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match self.text() {
            Some(t) => v.visit_str(t).map_err(|e: DeError| e.at(&self.0.loc)),
            None => Err(self.wrong(&v)),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let loc = &self.0.loc;
        if self.0.is_null() {
            v.visit_none().map_err(|e: DeError| e.at(loc))
        } else {
            v.visit_some(self).map_err(|e: DeError| e.at(loc))
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            v.visit_unit().map_err(|e: DeError| e.at(&self.0.loc))
        } else {
            Err(self.wrong(&v))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        let loc = &self.0.loc;
        v.visit_newtype_struct(self).map_err(|e: DeError| e.at(loc))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            Kind::Seq(items) => v
                .visit_seq(Seq(items.iter()))
                .map_err(|e: DeError| e.at(&self.0.loc)),
            _ => Err(self.wrong(&v)),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            Kind::Map(entries) => v
                .visit_map(Map::new(entries))
                .map_err(|e: DeError| e.at(&self.0.loc)),
            Kind::Null => v
                .visit_map(Map::new(&[]))
                .map_err(|e: DeError| e.at(&self.0.loc)),
            _ => Err(self.wrong(&v)),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let entries: &[(Key, Node)] = match &self.0.kind {
            Kind::Map(entries) => entries,
            Kind::Null => &[],
            _ => return Err(self.wrong(&"a mapping")),
        };
        if let Some((k, _)) = entries
            .iter()
            .find(|(k, _)| !fields.contains(&k.name.as_str()))
        {
            return Err(<DeError as de::Error>::unknown_field(&k.name, fields).at(&k.loc));
        }
        v.visit_map(Map::new(entries))
            .map_err(|e: DeError| e.at(&self.0.loc))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let loc = &self.0.loc;
        let r = match &self.0.kind {
            Kind::Scalar(s) => v.visit_enum(Enum {
                variant: &s.text,
                variant_loc: loc,
                value: None,
            }),
            Kind::Map(entries) if entries.len() == 1 => v.visit_enum(Enum {
                variant: &entries[0].0.name,
                variant_loc: &entries[0].0.loc,
                value: Some(&entries[0].1),
            }),
            _ => Err(self.wrong(&"a single value")),
        };
        r.map_err(|e: DeError| e.at(loc))
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

fn parse_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_float(t: &str) -> Option<f64> {
    let first = t.chars().next()?;
    if !(first.is_ascii_digit() || matches!(first, '-' | '+' | '.')) {
        return None;
    }
    t.parse::<f64>().ok()
}

struct Seq<'a>(std::slice::Iter<'a, Node>);

impl<'a> SeqAccess<'a> for Seq<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some(n) => seed
                .deserialize(NodeDe(n))
                .map(Some)
                .map_err(|e: DeError| e.at(&n.loc).quiet_if_failed(n)),
            None => Ok(None),
        }
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<(&'a Key, &'a Node)>,
}

impl<'a> Map<'a> {
    fn new(entries: &'a [(Key, Node)]) -> Map<'a> {
        Map {
            entries: entries.iter(),
            value: None,
        }
    }
}

impl<'a> MapAccess<'a> for Map<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some((k, v));
                let de: de::value::StrDeserializer<DeError> = k.name.as_str().into_deserializer();
                seed.deserialize(de)
                    .map(Some)
                    .map_err(|e: DeError| e.at(&k.loc))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((k, n)) => seed.deserialize(NodeDe(n)).map_err(|e: DeError| {
                let mut e = e.at(&n.loc).quiet_if_failed(n);
                // Values never appear in messages, but a visitor may quote one.
                if let (true, Some(text)) = (super::is_secret_key(&k.name), n.scalar()) {
                    if !text.is_empty() {
                        e.message = e.message.replace(text, "<hidden>");
                    }
                }
                e
            }),
            None => Err(de::Error::custom("value without a key")),
        }
    }
}

struct Enum<'a> {
    variant: &'a str,
    variant_loc: &'a Location,
    value: Option<&'a Node>,
}

impl<'a> EnumAccess<'a> for Enum<'a> {
    type Error = DeError;
    type Variant = Variant<'a>;

    fn variant_seed<S: DeserializeSeed<'a>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Variant<'a>), DeError> {
        let de: de::value::StrDeserializer<DeError> = self.variant.into_deserializer();
        let v = seed
            .deserialize(de)
            .map_err(|e: DeError| e.at(self.variant_loc))?;
        Ok((v, Variant(self.value)))
    }
}

struct Variant<'a>(Option<&'a Node>);

impl<'a> VariantAccess<'a> for Variant<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.0 {
            None => Ok(()),
            Some(n) if n.is_null() => Ok(()),
            Some(n) => {
                Err(<DeError as de::Error>::custom("expected no value for this variant").at(&n.loc))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.0 {
            Some(n) => seed.deserialize(NodeDe(n)),
            None => Err(de::Error::custom("expected a value for this variant")),
        }
    }

    fn tuple_variant<V: Visitor<'a>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        match self.0 {
            Some(n) => de::Deserializer::deserialize_seq(NodeDe(n), v),
            None => Err(de::Error::custom("expected a list for this variant")),
        }
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Some(n) => de::Deserializer::deserialize_struct(NodeDe(n), "", fields, v),
            None => Err(de::Error::custom("expected a mapping for this variant")),
        }
    }
}
