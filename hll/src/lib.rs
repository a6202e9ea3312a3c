//! TEMPORARY stand-in so the server compiles while the real sketch is written.
#![allow(missing_docs)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sketch {
    regs: Vec<u8>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError;
impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad")
    }
}
impl std::error::Error for DecodeError {}
impl Sketch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, item: &[u8]) -> bool {
        self.regs.extend_from_slice(item);
        true
    }
    pub fn merge(&mut self, other: &Sketch) {
        self.regs.extend_from_slice(&other.regs)
    }
    pub fn estimate(&self) -> u64 {
        self.regs.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }
    pub fn to_redis_bytes(&self) -> Vec<u8> {
        self.regs.clone()
    }
    pub fn from_redis_bytes(b: &[u8]) -> Result<Sketch, DecodeError> {
        Ok(Sketch { regs: b.to_vec() })
    }
    pub fn heap_bytes(&self) -> usize {
        self.regs.len()
    }
}
