//! Storage types of exported weights: f32, f16 and bf16 (each value rounded to nearest even) and
//! GGML's Q8_0 (blocks of 32 values: an f16 scale and 32 int8).

use anyhow::{bail, Result};
use half::{bf16, f16};
use std::fmt;
use std::str::FromStr;

/// How exported matrices are stored (1-D tensors, the RMSNorm gains, stay f32 in GGUF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DType {
    #[default]
    F32,
    F16,
    Bf16,
    /// GGUF only.
    Q8_0,
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "q8_0" | "q8" => Ok(DType::Q8_0),
            _ => Err(format!("{s:?}: expected f32, f16, bf16 or q8_0")),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::Q8_0 => "q8_0",
        })
    }
}

/// Values per Q8_0 block.
pub const Q8_0_BLOCK: usize = 32;
/// Bytes per Q8_0 block: the f16 scale, then 32 int8.
pub const Q8_0_BYTES: usize = 34;

impl DType {
    /// Little-endian bytes of `x` in this type; Q8_0 needs `x.len()` to be a multiple of 32
    /// (blocks run along rows, so each row length must be).
    pub fn encode(self, x: &[f32]) -> Result<Vec<u8>> {
        fn each<const N: usize>(x: &[f32], f: impl Fn(f32) -> [u8; N]) -> Vec<u8> {
            let mut out = vec![0u8; x.len() * N];
            for (o, &v) in out.chunks_exact_mut(N).zip(x) {
                o.copy_from_slice(&f(v));
            }
            out
        }
        Ok(match self {
            DType::F32 => each(x, f32::to_le_bytes),
            DType::F16 => each(x, |v| f16::from_f32(v).to_le_bytes()),
            DType::Bf16 => each(x, |v| bf16::from_f32(v).to_le_bytes()),
            DType::Q8_0 => {
                if !x.len().is_multiple_of(Q8_0_BLOCK) {
                    bail!("Q8_0 needs a multiple of {Q8_0_BLOCK} values, got {}", x.len());
                }
                let mut out = Vec::with_capacity(x.len() / Q8_0_BLOCK * Q8_0_BYTES);
                for block in x.chunks_exact(Q8_0_BLOCK) {
                    out.extend_from_slice(&q8_0_block(block));
                }
                out
            }
        })
    }
}

/// One Q8_0 block as ggml's reference quantizer makes it: d = max|x|/127 (stored as f16),
/// q = round(x/d) (half away from zero), computed with the f32 d and its f32 reciprocal.
pub fn q8_0_block(x: &[f32]) -> [u8; Q8_0_BYTES] {
    assert_eq!(x.len(), Q8_0_BLOCK, "q8_0_block: a block is 32 values");
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut out = [0u8; Q8_0_BYTES];
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (o, &v) in out[2..].iter_mut().zip(x) {
        *o = ((v * id).round() as i8) as u8;
    }
    out
}

/// The values a Q8_0 byte string stands for (scale·q).
pub fn q8_0_decode(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / Q8_0_BYTES * Q8_0_BLOCK);
    for b in bytes.chunks_exact(Q8_0_BYTES) {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        out.extend(b[2..].iter().map(|&q| d * (q as i8) as f32));
    }
    out
}

/// f32 values from little-endian f16 bytes.
pub fn f16_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// f32 values from little-endian bf16 bytes.
pub fn bf16_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// f32 values from little-endian f32 bytes.
pub fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
