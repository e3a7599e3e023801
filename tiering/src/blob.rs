use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};

use compact_bytes::CompactBytes;

/// A byte string as the keyspace stores it: keys, string values, members and fields.
///
/// Up to 23 bytes live inline (no allocation), which covers most keys and small values; the
/// type is 24 bytes either way. It never borrows a connection's input buffer, so a stored value
/// cannot pin received network data in memory.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Blob(CompactBytes);

impl Blob {
    /// Copies `bytes` into a new blob.
    pub fn new(bytes: &[u8]) -> Blob {
        Blob(CompactBytes::new(bytes))
    }

    /// Appends bytes, growing the heap buffer geometrically.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes)
    }

    /// Resizes to `len`, filling new bytes with zeros.
    pub fn resize_zeroed(&mut self, len: usize) {
        if len <= self.0.len() {
            self.0.truncate(len);
        } else {
            self.0.reserve(len - self.0.len());
            while self.0.len() < len {
                self.0.push(0);
            }
        }
    }

    /// Bytes allocated on the heap for this blob (0 when inline).
    pub fn heap_size(&self) -> usize {
        if self.0.spilled() {
            self.0.capacity()
        } else {
            0
        }
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Blob {
        Blob(CompactBytes::from(bytes))
    }
}

impl From<&[u8]> for Blob {
    fn from(bytes: &[u8]) -> Blob {
        Blob::new(bytes)
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl DerefMut for Blob {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }
}

impl Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl Hash for Blob {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly like `[u8]` for `Borrow<[u8]>` lookups to work.
        self.0.as_slice().hash(state)
    }
}

impl PartialOrd for Blob {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Blob {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_slice().cmp(other.0.as_slice())
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}
