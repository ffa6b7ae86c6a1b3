//! D-Bus wire format (the specification's "Marshaling" section), for the few types systemd's
//! unit API needs: little endian only, every value aligned to its type's alignment counted
//! from the start of the message (header and body are one stream: the body starts 8-aligned).

/// A value of a unit property (`v` on the wire) or of a method argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    U32(u32),
    U64(u64),
    Str(String),
    ObjectPath(String),
    Bytes(Vec<u8>),
    U32Array(Vec<u32>),
    Strings(Vec<String>),
    /// `a(sv)`: systemd's property lists.
    Properties(Vec<(String, Value)>),
    /// `a(sa(sv))`: StartTransientUnit's auxiliary units.
    AuxUnits(Vec<(String, Vec<(String, Value)>)>),
}

impl Value {
    /// The value's D-Bus signature.
    pub fn signature(&self) -> &'static str {
        match self {
            Value::Bool(_) => "b",
            Value::U32(_) => "u",
            Value::U64(_) => "t",
            Value::Str(_) => "s",
            Value::ObjectPath(_) => "o",
            Value::Bytes(_) => "ay",
            Value::U32Array(_) => "au",
            Value::Strings(_) => "as",
            Value::Properties(_) => "a(sv)",
            Value::AuxUnits(_) => "a(sa(sv))",
        }
    }
}

/// Appends marshalled values to a buffer whose first byte is the message's first byte.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Pads with zeros to a multiple of `n`.
    pub fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u32(u32::from(v));
    }

    /// `s` and `o`: a u32 length, the bytes, a NUL.
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// `g`: a u8 length, the bytes, a NUL.
    pub fn signature(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// An array: its u32 byte length (patched afterwards), padding to the element alignment
    /// (not counted in the length), then the elements `body` writes.
    pub fn array(&mut self, element_alignment: usize, body: impl FnOnce(&mut Writer)) {
        self.u32(0);
        let length_at = self.buf.len() - 4;
        self.align(element_alignment);
        let start = self.buf.len();
        body(self);
        let length = (self.buf.len() - start) as u32;
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    }

    /// `v`: the signature of the value, then the value.
    pub fn variant(&mut self, value: &Value) {
        self.signature(value.signature());
        self.value(value);
    }

    pub fn value(&mut self, value: &Value) {
        match value {
            Value::Bool(v) => self.bool(*v),
            Value::U32(v) => self.u32(*v),
            Value::U64(v) => self.u64(*v),
            Value::Str(s) | Value::ObjectPath(s) => self.str(s),
            Value::Bytes(bytes) => self.array(1, |w| w.buf.extend_from_slice(bytes)),
            Value::U32Array(values) => self.array(4, |w| values.iter().for_each(|v| w.u32(*v))),
            Value::Strings(values) => self.array(4, |w| values.iter().for_each(|s| w.str(s))),
            Value::Properties(properties) => self.properties(properties),
            Value::AuxUnits(units) => self.array(8, |w| {
                for (name, properties) in units {
                    w.align(8);
                    w.str(name);
                    w.properties(properties);
                }
            }),
        }
    }

    fn properties(&mut self, properties: &[(String, Value)]) {
        self.array(8, |w| {
            for (name, value) in properties {
                w.align(8);
                w.str(name);
                w.variant(value);
            }
        });
    }
}

/// Why bytes could not be read as the expected D-Bus value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed D-Bus message: {}", self.0)
    }
}

/// Reads values from a message; `pos` counts from the message's first byte (alignment).
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { buf, pos }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| DecodeError(format!("{n} bytes past the end at {}", self.pos)))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub fn align(&mut self, n: usize) -> Result<(), DecodeError> {
        let padded = self.pos.next_multiple_of(n);
        self.take(padded - self.pos).map(drop)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.align(4)?;
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.align(8)?;
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// `s` or `o`.
    pub fn str(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len + 1)?;
        String::from_utf8(bytes[..len].to_vec()).map_err(|_| DecodeError("string not UTF-8".into()))
    }

    /// `g`.
    pub fn signature(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len + 1)?;
        String::from_utf8(bytes[..len].to_vec())
            .map_err(|_| DecodeError("signature not UTF-8".into()))
    }

    /// Skips one complete value of the single complete type at the start of `signature`;
    /// returns the rest of the signature.
    pub fn skip<'s>(&mut self, signature: &'s str) -> Result<&'s str, DecodeError> {
        let bad = || DecodeError(format!("unsupported signature {signature:?}"));
        let first = signature.as_bytes().first().ok_or_else(bad)?;
        let rest = &signature[1..];
        match first {
            b'y' => self.u8().map(|_| rest),
            b'b' | b'u' | b'i' | b'h' => self.u32().map(|_| rest),
            b'n' | b'q' => {
                self.align(2)?;
                self.take(2).map(|_| rest)
            }
            b't' | b'x' | b'd' => self.u64().map(|_| rest),
            b's' | b'o' => self.str().map(|_| rest),
            b'g' => self.signature().map(|_| rest),
            b'v' => {
                let inner = self.signature()?;
                let left = self.skip(&inner)?;
                if !left.is_empty() {
                    return Err(bad());
                }
                Ok(rest)
            }
            b'a' => {
                let len = self.u32()? as usize;
                let element = single_type(rest).ok_or_else(bad)?;
                self.align(type_alignment(element))?;
                let end = self.pos + len;
                while self.pos < end {
                    self.skip(element)?;
                }
                if self.pos != end {
                    return Err(DecodeError("array length does not match".into()));
                }
                Ok(&rest[element.len()..])
            }
            b'(' | b'{' => {
                let whole = single_type(signature).ok_or_else(bad)?;
                self.align(8)?;
                let mut inner = &whole[1..whole.len() - 1];
                while !inner.is_empty() {
                    inner = self.skip(inner)?;
                }
                Ok(&signature[whole.len()..])
            }
            _ => Err(bad()),
        }
    }
}

/// The first single complete type of `signature`.
pub fn single_type(signature: &str) -> Option<&str> {
    let bytes = signature.as_bytes();
    let end = match *bytes.first()? {
        b'a' => 1 + single_type(&signature[1..])?.len(),
        open @ (b'(' | b'{') => {
            let close = if open == b'(' { b')' } else { b'}' };
            let mut depth = 0usize;
            let mut end = None;
            for (i, b) in bytes.iter().enumerate() {
                if *b == open {
                    depth += 1;
                } else if *b == close {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
            }
            end?
        }
        _ => 1,
    };
    Some(&signature[..end])
}

/// The alignment of a type by its first signature character.
pub fn type_alignment(signature: &str) -> usize {
    match signature.as_bytes().first() {
        Some(b'n' | b'q') => 2,
        Some(b'b' | b'u' | b'i' | b'h' | b'a' | b's' | b'o') => 4,
        Some(b't' | b'x' | b'd' | b'(' | b'{') => 8,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_types_are_aligned_from_the_message_start() {
        let mut w = Writer::new();
        w.u8(1);
        w.u32(0x0102_0304);
        w.u8(2);
        w.u64(5);
        assert_eq!(
            w.buf,
            [
                1, 0, 0, 0, 4, 3, 2, 1, // y, 3 bytes padding, u (little endian)
                2, 0, 0, 0, 0, 0, 0, 0, // y, padding to 8
                5, 0, 0, 0, 0, 0, 0, 0, // t
            ]
        );
    }

    #[test]
    fn strings_signatures_and_booleans() {
        let mut w = Writer::new();
        w.str("ab");
        w.signature("as");
        w.bool(true);
        assert_eq!(
            w.buf,
            [2, 0, 0, 0, b'a', b'b', 0, 2, b'a', b's', 0, 0, 1, 0, 0, 0]
        );
    }

    #[test]
    fn array_length_excludes_the_padding_before_the_first_element() {
        // a(sv) with one ("A", t 7): length u32 at 0, padding 4..8, struct at 8.
        let mut w = Writer::new();
        w.value(&Value::Properties(vec![("A".into(), Value::U64(7))]));
        assert_eq!(
            w.buf,
            [
                24, 0, 0, 0, 0, 0, 0, 0, // array length 24, pad to 8
                1, 0, 0, 0, b'A', 0, // s "A"
                1, b't', 0, // g "t"
                0, 0, 0, 0, 0, 0, 0, // pad to 8 (at 24)
                7, 0, 0, 0, 0, 0, 0, 0, // t 7
            ]
        );
        // An empty array of structs still pads to the element alignment.
        let mut w = Writer::new();
        w.u8(9);
        w.value(&Value::AuxUnits(Vec::new()));
        assert_eq!(w.buf, [9, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn byte_and_u32_arrays() {
        let mut w = Writer::new();
        w.variant(&Value::Bytes(vec![0x0f, 0x01]));
        w.variant(&Value::U32Array(vec![42]));
        assert_eq!(
            w.buf,
            [
                2, b'a', b'y', 0, 2, 0, 0, 0, 0x0f, 0x01, // g "ay", len 2, bytes
                2, b'a', b'u', 0, // g "au" at 10
                0, 0, // pad to 16
                4, 0, 0, 0, 42, 0, 0, 0, // len 4, u32 42
            ]
        );
    }

    #[test]
    fn reader_reads_what_the_writer_wrote() {
        let mut w = Writer::new();
        w.u8(1);
        w.str("/org/freedesktop/systemd1/job/7");
        w.u64(u64::MAX);
        w.signature("a(sv)");
        w.value(&Value::Properties(vec![
            ("Delegate".into(), Value::Bool(true)),
            ("PIDs".into(), Value::U32Array(vec![1, 2])),
        ]));
        w.str("end");
        let mut r = Reader::new(&w.buf, 0);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.str().unwrap(), "/org/freedesktop/systemd1/job/7");
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.signature().unwrap(), "a(sv)");
        assert_eq!(r.skip("a(sv)s").unwrap(), "s");
        assert_eq!(r.str().unwrap(), "end");
        assert!(r.u8().is_err());
    }

    #[test]
    fn single_types() {
        assert_eq!(single_type("a(sv)s"), Some("a(sv)"));
        assert_eq!(single_type("a{sv}"), Some("a{sv}"));
        assert_eq!(single_type("(s(ss))u"), Some("(s(ss))"));
        assert_eq!(single_type("su"), Some("s"));
        assert_eq!(single_type("(s"), None);
    }
}
