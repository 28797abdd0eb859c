//! Typed decoding of a located tree: a serde `Deserializer` over [`Node`] that tracks the
//! key path, so that every error (wrong type, unknown key, missing key, bad value) names the
//! path (`services.web.deploy.replicas`) and the line and column of the value at fault.
//!
//! Keys starting with `x-` are extension fields: typed structs never see them (the loader
//! keeps them where Compose keeps them).

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::error::DecodeError;
use super::node::{Key, Node, Value};

/// Decodes `node`, found at `path`, into `T`.
pub fn decode<'de, T: de::Deserialize<'de>>(node: &'de Node, path: &str) -> Result<T, DecodeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_owned(),
    })
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub struct NodeDe<'a> {
    pub node: &'a Node,
    pub path: String,
}

impl NodeDe<'_> {
    fn locate(&self, err: DecodeError) -> DecodeError {
        err.locate(&self.path, self.node.at)
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                path: &self.path,
                index: 0,
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                path: &self.path,
                pending: None,
                skip_extensions: false,
            }),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.node.value {
            Value::Null => visitor.visit_none().map_err(|e| self.locate(e)),
            _ => {
                let (path, at) = (self.path.clone(), self.node.at);
                visitor.visit_some(self).map_err(|e| e.locate(&path, at))
            }
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let (path, at) = (self.path.clone(), self.node.at);
        if name == PEEK {
            return visitor
                .visit_enum(PeekAccess(self))
                .map_err(|e| e.locate(&path, at));
        }
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.locate(&path, at))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(MapDe {
                    entries: entries.iter(),
                    path: &self.path,
                    pending: None,
                    skip_extensions: true,
                })
                .map_err(|e| self.locate(e)),
            other => Err(DecodeError::at(
                &self.path,
                self.node.at,
                format!("expected a mapping, found {}", other.kind()),
            )),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match &self.node.value {
            Value::Str(s) => {
                let d: StrDeserializer<'_, DecodeError> = s.as_str().into_deserializer();
                visitor.visit_enum(d).map_err(|e| self.locate(e))
            }
            other => Err(DecodeError::at(
                &self.path,
                self.node.at,
                format!("expected a string, found {}", other.kind()),
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct SeqDe<'a, I> {
    items: I,
    path: &'a str,
    index: usize,
}

impl<'de, I: Iterator<Item = &'de Node>> de::SeqAccess<'de> for SeqDe<'_, I> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        let at = node.at;
        seed.deserialize(NodeDe {
            node,
            path: path.clone(),
        })
        .map(Some)
        .map_err(|e| e.locate(&path, at))
    }
}

struct MapDe<'p, 'n, I> {
    entries: I,
    path: &'p str,
    pending: Option<(&'n Key, &'n Node)>,
    skip_extensions: bool,
}

impl<'de, I: Iterator<Item = &'de (Key, Node)>> de::MapAccess<'de> for MapDe<'_, 'de, I> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        loop {
            let Some((key, value)) = self.entries.next() else {
                return Ok(None);
            };
            if self.skip_extensions && key.name.starts_with("x-") {
                continue;
            }
            self.pending = Some((key, value));
            let path = join(self.path, &key.name);
            let d: StrDeserializer<'_, DecodeError> = key.name.as_str().into_deserializer();
            return seed
                .deserialize(d)
                .map(Some)
                .map_err(|e| e.locate(&path, key.at));
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let Some((key, node)) = self.pending.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        let path = join(self.path, &key.name);
        seed.deserialize(NodeDe {
            node,
            path: path.clone(),
        })
        .map_err(|e| e.locate(&path, node.at))
    }
}

/// The shape of a value, for the Compose keys that take one of two syntaxes
/// (`command: a string | a list`, `ports: - a string | a mapping`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Seq,
    Map,
}

impl Shape {
    fn of(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Seq(_) => "seq",
            Value::Map(_) => "map",
        }
    }
}

pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// The newtype name under which the decoder tells a visitor the shape of the value ahead
/// (as an enum variant), so that one of two types is decoded straight from the tree,
/// keeping the locations of its errors.
const PEEK: &str = "$hive::compose::shape";

/// Decodes `A` when the value has one of the `left` shapes, `B` otherwise.
pub fn by_shape<'de, D, A, B>(d: D, left: &'static [Shape]) -> Result<Either<A, B>, D::Error>
where
    D: de::Deserializer<'de>,
    A: de::Deserialize<'de>,
    B: de::Deserialize<'de>,
{
    struct Switch<A, B> {
        left: &'static [Shape],
        _ab: std::marker::PhantomData<(A, B)>,
    }
    impl<'de, A: de::Deserialize<'de>, B: de::Deserialize<'de>> Visitor<'de> for Switch<A, B> {
        type Value = Either<A, B>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a Compose value")
        }
        fn visit_enum<E: de::EnumAccess<'de>>(self, data: E) -> Result<Self::Value, E::Error> {
            use de::VariantAccess as _;
            let (shape, variant): (Shape, _) = data.variant()?;
            if self.left.contains(&shape) {
                variant.newtype_variant::<A>().map(Either::Left)
            } else {
                variant.newtype_variant::<B>().map(Either::Right)
            }
        }
    }
    d.deserialize_newtype_struct(
        PEEK,
        Switch {
            left,
            _ab: std::marker::PhantomData,
        },
    )
}

struct PeekAccess<'a>(NodeDe<'a>);

impl<'de> de::EnumAccess<'de> for PeekAccess<'de> {
    type Error = DecodeError;
    type Variant = NodeDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'de>), DecodeError> {
        let d: StrDeserializer<'_, DecodeError> = Shape::of(&self.0.node.value).into_deserializer();
        Ok((seed.deserialize(d)?, self.0))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<(), DecodeError> {
        Err(de::Error::custom("a shape has no unit variant"))
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _v: V) -> Result<V::Value, DecodeError> {
        Err(de::Error::custom("a shape has no tuple variant"))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, DecodeError> {
        Err(de::Error::custom("a shape has no struct variant"))
    }
}
