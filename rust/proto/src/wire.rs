//! Little-endian readers and writers for message bodies.
//!
//! Every length read from the wire is checked against what is left in the
//! buffer (and against a per-field cap) before anything is allocated, so a
//! hostile length can never make us reserve memory we were not sent.

use crate::error::{DecodeError, EncodeError};

/// Cursor over an untrusted byte slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("boolean is neither 0 nor 1")),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.array::<2>()?;
        Ok(u16::from_le_bytes(b))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.array::<4>()?;
        Ok(u32::from_le_bytes(b))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.array::<8>()?;
        Ok(u64::from_le_bytes(b))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Bytes with a `u16` length prefix, at most `cap` long.
    pub(crate) fn bytes16(&mut self, cap: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        if len > cap {
            return Err(DecodeError::TooLong { len, max: cap });
        }
        self.take(len)
    }

    /// Bytes with a `u32` length prefix, at most `cap` long.
    pub(crate) fn bytes32(&mut self, cap: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if len > cap {
            return Err(DecodeError::TooLong { len, max: cap });
        }
        self.take(len)
    }

    /// UTF-8 text with a `u16` length prefix, at most `cap` bytes.
    pub(crate) fn str16(&mut self, cap: usize) -> Result<String, DecodeError> {
        let b = self.bytes16(cap)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Invalid("text is not valid UTF-8"))
    }

    /// Fails when bytes are left over: trailing garbage is a protocol error.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Appends little-endian values to a buffer.
pub(crate) trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_bool(&mut self, v: bool);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_slice(&mut self, v: &[u8]);
    /// Writes a `u16` length then the bytes; refuses more than `cap` bytes.
    fn put_bytes16(&mut self, v: &[u8], cap: usize) -> Result<(), EncodeError>;
    /// Writes a `u32` length then the bytes; refuses more than `cap` bytes.
    fn put_bytes32(&mut self, v: &[u8], cap: usize) -> Result<(), EncodeError>;
    fn put_str16(&mut self, v: &str, cap: usize) -> Result<(), EncodeError>;
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_bool(&mut self, v: bool) {
        self.push(u8::from(v));
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
    fn put_bytes16(&mut self, v: &[u8], cap: usize) -> Result<(), EncodeError> {
        let cap = cap.min(usize::from(u16::MAX));
        let len = u16::try_from(v.len())
            .ok()
            .filter(|l| usize::from(*l) <= cap)
            .ok_or(EncodeError::TooLong {
                len: v.len(),
                max: cap,
            })?;
        self.put_u16(len);
        self.extend_from_slice(v);
        Ok(())
    }
    fn put_bytes32(&mut self, v: &[u8], cap: usize) -> Result<(), EncodeError> {
        let len = u32::try_from(v.len())
            .ok()
            .filter(|_| v.len() <= cap)
            .ok_or(EncodeError::TooLong {
                len: v.len(),
                max: cap,
            })?;
        self.put_u32(len);
        self.extend_from_slice(v);
        Ok(())
    }
    fn put_str16(&mut self, v: &str, cap: usize) -> Result<(), EncodeError> {
        self.put_bytes16(v.as_bytes(), cap)
    }
}
