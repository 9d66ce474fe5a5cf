//! Avro binary straight between bytes and the model types, with no
//! intermediate `apache_avro::types::Value` tree.
//!
//! apache-avro decodes a datum into a generic value tree and then walks it
//! with serde; it encodes a schema with named-type references the same way
//! round. Each record of the hot path paid for a tree of small allocations
//! both ways (a fifth of a stage thread's time, docs/benchmarks.md). Here:
//!
//! - [`inline_references`] copies a schema with every reference to a named
//!   type replaced by its definition, so that apache-avro's direct serde
//!   serializer (which cannot follow references) can write it. The binary
//!   encoding never contains names, so the bytes are the same;
//! - [`from_datum`] is a serde deserializer driven by such a schema, reading
//!   the binary encoding directly into the target type.
//!
//! Both are used only for the current schema of a type. Records written
//! with an earlier schema go through apache-avro's schema resolution, and
//! the unit tests check both directions against apache-avro's own codec.

use apache_avro::schema::{ArraySchema, MapSchema, Name, RecordSchema, UnionSchema};
use apache_avro::Schema;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use std::collections::HashMap;

/// A copy of `schema` in which no `Ref` is left.
pub fn inline_references(schema: &Schema) -> Schema {
    let mut named = HashMap::new();
    collect_named(schema, &mut named);
    inline(schema, &named)
}

fn collect_named(s: &Schema, out: &mut HashMap<String, Schema>) {
    match s {
        Schema::Record(r) => {
            out.entry(r.name.fullname(None))
                .or_insert_with(|| s.clone());
            r.fields.iter().for_each(|f| collect_named(&f.schema, out));
        }
        Schema::Enum(e) => {
            out.entry(e.name.fullname(None))
                .or_insert_with(|| s.clone());
        }
        Schema::Fixed(f) => {
            out.entry(f.name.fullname(None))
                .or_insert_with(|| s.clone());
        }
        Schema::Array(a) => collect_named(&a.items, out),
        Schema::Map(m) => collect_named(&m.types, out),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_named(v, out)),
        _ => {}
    }
}

fn inline(s: &Schema, named: &HashMap<String, Schema>) -> Schema {
    match s {
        Schema::Ref { name } => {
            let def = named
                .get(&name.fullname(None))
                .unwrap_or_else(|| panic!("schema references {} but never defines it", full(name)));
            inline(def, named)
        }
        Schema::Record(r) => {
            let mut r: RecordSchema = r.clone();
            for f in &mut r.fields {
                f.schema = inline(&f.schema, named);
            }
            Schema::Record(r)
        }
        Schema::Array(a) => Schema::Array(ArraySchema {
            items: Box::new(inline(&a.items, named)),
            attributes: a.attributes.clone(),
        }),
        Schema::Map(m) => Schema::Map(MapSchema {
            types: Box::new(inline(&m.types, named)),
            attributes: m.attributes.clone(),
        }),
        Schema::Union(u) => Schema::Union(
            UnionSchema::new(u.variants().iter().map(|v| inline(v, named)).collect())
                .expect("a union stays valid with its references inlined"),
        ),
        other => other.clone(),
    }
}

fn full(n: &Name) -> String {
    n.fullname(None)
}

/// Decodes one datum of `schema` (which must have no references left) from
/// the front of `input`, advancing it past the datum.
pub fn from_datum<T: DeserializeOwned>(schema: &Schema, input: &mut &[u8]) -> Result<T, Error> {
    T::deserialize(Datum { schema, input })
}

#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Error(msg.to_string())
    }
}

fn truncated() -> Error {
    Error("the datum ends early".into())
}

fn read_long(input: &mut &[u8]) -> Result<i64, Error> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or_else(truncated)?;
        *input = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            // Zig-zag: the sign is the lowest bit.
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(Error("a variable-length integer runs past 10 bytes".into()))
}

fn read_len(input: &mut &[u8]) -> Result<usize, Error> {
    let n = read_long(input)?;
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= input.len())
        .ok_or_else(|| {
            Error(format!(
                "a length of {n} does not fit the {} bytes left",
                input.len()
            ))
        })
}

fn read_slice<'de>(input: &mut &'de [u8], n: usize) -> Result<&'de [u8], Error> {
    if input.len() < n {
        return Err(truncated());
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn read_str<'de>(input: &mut &'de [u8]) -> Result<&'de str, Error> {
    let n = read_len(input)?;
    std::str::from_utf8(read_slice(input, n)?)
        .map_err(|e| Error(format!("a string is not UTF-8: {e}")))
}

/// The next block count of an array or map: a negative count is followed
/// by the block's size in bytes.
fn read_block_count(input: &mut &[u8]) -> Result<usize, Error> {
    let n = read_long(input)?;
    if n < 0 {
        read_long(input)?;
    }
    // Every item takes at least one byte (or none for null items, which
    // sendgate's schemas never have): refuse counts the input cannot hold.
    let n = n.unsigned_abs() as usize;
    if n > input.len() {
        return Err(Error(format!(
            "a block of {n} items does not fit the {} bytes left",
            input.len()
        )));
    }
    Ok(n)
}

/// Reads a union's branch index: the index and the branch's schema.
fn union_branch<'s>(u: &'s UnionSchema, input: &mut &[u8]) -> Result<(usize, &'s Schema), Error> {
    let i = read_long(input)?;
    usize::try_from(i)
        .ok()
        .and_then(|i| u.variants().get(i).map(|s| (i, s)))
        .ok_or_else(|| Error(format!("union branch {i} does not exist")))
}

struct Datum<'s, 'a, 'de> {
    schema: &'s Schema,
    input: &'a mut &'de [u8],
}

impl<'de> de::Deserializer<'de> for Datum<'_, '_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match read_slice(self.input, 1)?[0] {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                b => Err(Error(format!("{b} is not a boolean"))),
            },
            Schema::Int => {
                let v = read_long(self.input)?;
                visitor.visit_i32(
                    i32::try_from(v).map_err(|_| Error(format!("{v} does not fit an int")))?,
                )
            }
            Schema::Long => visitor.visit_i64(read_long(self.input)?),
            Schema::Float => visitor.visit_f32(f32::from_le_bytes(
                read_slice(self.input, 4)?.try_into().expect("4 bytes"),
            )),
            Schema::Double => visitor.visit_f64(f64::from_le_bytes(
                read_slice(self.input, 8)?.try_into().expect("8 bytes"),
            )),
            Schema::String => visitor.visit_borrowed_str(read_str(self.input)?),
            Schema::Bytes => {
                let n = read_len(self.input)?;
                visitor.visit_borrowed_bytes(read_slice(self.input, n)?)
            }
            Schema::Enum(e) => {
                let i = read_long(self.input)?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| Error(format!("enum {} has no symbol {i}", full(&e.name))))?;
                visitor.visit_str(symbol)
            }
            Schema::Union(u) => {
                let (_, branch) = union_branch(u, self.input)?;
                Datum {
                    schema: branch,
                    input: self.input,
                }
                .deserialize_any(visitor)
            }
            Schema::Record(r) => visitor.visit_map(Fields {
                fields: &r.fields,
                next: 0,
                input: self.input,
            }),
            Schema::Array(a) => visitor.visit_seq(Items {
                items: &a.items,
                blocks: Blocks::default(),
                input: self.input,
            }),
            Schema::Map(m) => visitor.visit_map(Entries {
                values: &m.types,
                blocks: Blocks::default(),
                input: self.input,
            }),
            other => Err(Error(format!(
                "schema type {other:?} is not supported by the direct decoder"
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.schema {
            Schema::Union(u) => match union_branch(u, self.input)?.1 {
                Schema::Null => visitor.visit_none(),
                branch => visitor.visit_some(Datum {
                    schema: branch,
                    input: self.input,
                }),
            },
            Schema::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.schema {
            Schema::Enum(e) => {
                let i = read_long(self.input)?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| Error(format!("enum {} has no symbol {i}", full(&e.name))))?;
                visitor.visit_enum(symbol.as_str().into_deserializer())
            }
            Schema::Union(u) => {
                let (i, branch) = union_branch(u, self.input)?;
                if let Schema::Enum(_) = branch {
                    // A union holding an enum: the enum's symbol is the variant.
                    return Datum {
                        schema: branch,
                        input: self.input,
                    }
                    .deserialize_enum(name, variants, visitor);
                }
                // A union of records: branch i is the enum's variant i (as
                // apache-avro's serializer writes a newtype variant).
                let variant = variants.get(i).ok_or_else(|| {
                    Error(format!("{name} has no variant for union branch {i}"))
                })?;
                visitor.visit_enum(Branch {
                    variant,
                    datum: Datum {
                        schema: branch,
                        input: self.input,
                    },
                })
            }
            other => Err(Error(format!(
                "{name} is an enum, the schema has {other:?}"
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// One branch of a union, read as the newtype variant of the same index.
struct Branch<'s, 'a, 'de> {
    variant: &'static str,
    datum: Datum<'s, 'a, 'de>,
}

impl<'de, 's, 'a> de::EnumAccess<'de> for Branch<'s, 'a, 'de> {
    type Error = Error;
    type Variant = Datum<'s, 'a, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self::Variant), Error> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, self.datum))
    }
}

impl<'de> de::VariantAccess<'de> for Datum<'_, '_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.schema {
            Schema::Null => Ok(()),
            other => Err(Error(format!("a unit variant, the schema has {other:?}"))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Error> {
        Err(Error("tuple variants have no Avro form here".into()))
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], _visitor: V) -> Result<V::Value, Error> {
        Err(Error("struct variants have no Avro form here".into()))
    }
}

/// A record's fields, in the schema's order.
struct Fields<'s, 'a, 'de> {
    fields: &'s [apache_avro::schema::RecordField],
    next: usize,
    input: &'a mut &'de [u8],
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.fields.get(self.next) {
            Some(f) => seed
                .deserialize(f.name.as_str().into_deserializer())
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let f = &self.fields[self.next];
        self.next += 1;
        seed.deserialize(Datum {
            schema: &f.schema,
            input: self.input,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len() - self.next)
    }
}

/// Where a reader is in the blocks of an array or a map.
#[derive(Default)]
struct Blocks {
    left: usize,
    done: bool,
}

impl Blocks {
    /// Whether another item follows, reading the next block's count when
    /// the current block is used up (a count of 0 ends the value).
    fn another(&mut self, input: &mut &[u8]) -> Result<bool, Error> {
        if self.done {
            return Ok(false);
        }
        if self.left == 0 {
            self.left = read_block_count(input)?;
            if self.left == 0 {
                self.done = true;
                return Ok(false);
            }
        }
        self.left -= 1;
        Ok(true)
    }
}

/// An array's items.
struct Items<'s, 'a, 'de> {
    items: &'s Schema,
    blocks: Blocks,
    input: &'a mut &'de [u8],
}

impl<'de> de::SeqAccess<'de> for Items<'_, '_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.blocks.another(self.input)? {
            return Ok(None);
        }
        seed.deserialize(Datum {
            schema: self.items,
            input: self.input,
        })
        .map(Some)
    }
}

/// A map's entries (string keys).
struct Entries<'s, 'a, 'de> {
    values: &'s Schema,
    blocks: Blocks,
    input: &'a mut &'de [u8],
}

impl<'de> de::MapAccess<'de> for Entries<'_, '_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if !self.blocks.another(self.input)? {
            return Ok(None);
        }
        let key = read_str(self.input)?;
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(Datum {
            schema: self.values,
            input: self.input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_longs_decode_like_avro() {
        for v in [
            0i64,
            -1,
            1,
            -64,
            63,
            64,
            i64::MAX,
            i64::MIN,
            1_795_491_540_000,
        ] {
            let bytes =
                apache_avro::to_avro_datum(&Schema::Long, apache_avro::types::Value::Long(v))
                    .unwrap();
            let mut input = &bytes[..];
            assert_eq!(read_long(&mut input).unwrap(), v);
            assert!(input.is_empty());
        }
        assert!(
            read_long(&mut &[0x80u8, 0x80][..]).is_err(),
            "a truncated varint is an error"
        );
        assert!(
            read_long(&mut &[0xffu8; 11][..]).is_err(),
            "an endless varint is an error"
        );
    }

    #[test]
    fn blocks_with_a_byte_size_are_read() {
        // Other writers may give a block's size in bytes: a negative count.
        // [-2 items, 2 bytes] 3 5, [1 item] 7, end.
        let bytes = [3u8, 4, 6, 10, 2, 14, 0];
        let arr = Schema::parse_str(r#"{"type": "array", "items": "long"}"#).unwrap();
        let mut input = &bytes[..];
        assert_eq!(
            from_datum::<Vec<i64>>(&arr, &mut input).unwrap(),
            vec![3, 5, 7]
        );
        assert!(input.is_empty());
    }

    #[test]
    fn lengths_beyond_the_input_are_refused_before_allocating() {
        // A string claiming 1,000,000 bytes in a 3-byte input.
        let mut bytes =
            apache_avro::to_avro_datum(&Schema::Long, apache_avro::types::Value::Long(1_000_000))
                .unwrap();
        bytes.extend_from_slice(b"abc");
        assert!(from_datum::<String>(&Schema::String, &mut &bytes[..]).is_err());
        let arr = Schema::parse_str(r#"{"type": "array", "items": "long"}"#).unwrap();
        assert!(from_datum::<Vec<i64>>(&arr, &mut &bytes[..]).is_err());
    }
}
