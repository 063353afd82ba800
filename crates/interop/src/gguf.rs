//! GGUF v3 (llama.cpp's model file), written from its specification: a header, typed metadata
//! key/values, tensor descriptors, then the tensor data aligned to 32 bytes. [`export_gguf`]
//! writes a ferrolm checkpoint as `general.architecture = llama` with the tokenizer embedded as
//! GPT-2 byte-level BPE; [`GgufFile::parse`] reads any GGUF v2/v3 file back (tests and checks).
//!
//! GGUF's Llama tensors use the interleaved (Meta) q/k row layout, which is ferrolm's own, so no
//! permutation happens here. Dimensions are listed innermost first: a (rows, cols) matrix is
//! `[cols, rows]`.

use crate::dtype::{DType, Q8_0_BLOCK};
use crate::hf_export::{check_fresh_file, eos_token, load_source, tmp_path, ExportReport};
use crate::llama::{spec_of, tensor_names, RMS_NORM_EPS};
use anyhow::{bail, Context, Result};
use ferrolm_nn::model::Model;
use ferrolm_nn::ModelConfig;
use ferrolm_tokenizer::Tokenizer;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
pub const ALIGNMENT: usize = 32;

/// ggml tensor types used here.
pub const GGML_F32: u32 = 0;
pub const GGML_F16: u32 = 1;
pub const GGML_Q8_0: u32 = 8;
pub const GGML_BF16: u32 = 30;

/// llama.cpp's token types.
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_UNUSED: i32 = 5;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type code and elements (all of that type).
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    fn type_code(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(v) => out.push(*v),
            Value::I8(v) => out.push(*v as u8),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Bool(v) => out.push(*v as u8),
            Value::Str(s) => write_str(out, s),
            Value::Array(t, items) => {
                out.extend_from_slice(&t.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for i in items {
                    debug_assert_eq!(i.type_code(), *t, "GGUF arrays hold one type");
                    i.write(out);
                }
            }
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }

    /// An array of strings.
    pub fn strings(items: impl IntoIterator<Item = String>) -> Value {
        Value::Array(8, items.into_iter().map(Value::Str).collect())
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// One tensor to write: name, ggml dims (innermost first), ggml type and its encoded bytes.
pub struct TensorOut {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

fn pad_to(out: &mut Vec<u8>, align: usize) {
    out.resize(out.len().div_ceil(align) * align, 0);
}

/// A whole GGUF v3 file from metadata (in order) and tensors (data aligned to [`ALIGNMENT`]).
pub fn write_gguf(metadata: &[(String, Value)], tensors: &[TensorOut]) -> Vec<u8> {
    let mut out = Vec::new();
    write_gguf_to(&mut out, metadata, tensors).expect("writing to a Vec does not fail");
    out
}

/// [`write_gguf`] into `w`: the header is built in memory, the tensor data written as it is.
/// Returns the bytes written.
pub fn write_gguf_to(
    w: &mut impl Write,
    metadata: &[(String, Value)],
    tensors: &[TensorOut],
) -> std::io::Result<u64> {
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        write_str(&mut out, k);
        out.extend_from_slice(&v.type_code().to_le_bytes());
        v.write(&mut out);
    }
    let mut offset = 0u64;
    for t in tensors {
        write_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ggml_type.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += (t.data.len().div_ceil(ALIGNMENT) * ALIGNMENT) as u64;
    }
    pad_to(&mut out, ALIGNMENT);
    w.write_all(&out)?;
    let mut written = out.len() as u64;
    let zeros = [0u8; ALIGNMENT];
    for t in tensors {
        let pad = t.data.len().div_ceil(ALIGNMENT) * ALIGNMENT - t.data.len();
        w.write_all(&t.data)?;
        w.write_all(&zeros[..pad])?;
        written += (t.data.len() + pad) as u64;
    }
    Ok(written)
}

/// GGUF's token list for `tok`, padded to `vocab_size` rows with unused `[PAD{id}]` entries:
/// (tokens in GPT-2's byte alphabet, specials as their text; token types; merges "a b").
pub fn gguf_vocab(tok: &Tokenizer, vocab_size: usize) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let json = tok.tokenizer_json();
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size.max(tok.vocab_size())];
    let mut types = vec![TOKEN_NORMAL; tokens.len()];
    if let Some(map) = json["model"]["vocab"].as_object() {
        for (s, id) in map {
            if let Some(slot) = id.as_u64().and_then(|i| tokens.get_mut(i as usize)) {
                *slot = Some(s.clone());
            }
        }
    }
    for (s, id) in tok.special_tokens() {
        tokens[*id as usize] = Some(s.clone());
        types[*id as usize] = TOKEN_CONTROL;
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = TOKEN_UNUSED;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges = json["model"]["merges"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(String::from)).collect())
        .unwrap_or_default();
    (tokens, types, merges)
}

fn file_type(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q8_0 => 7,
        DType::Bf16 => 32,
    }
}

fn ggml_type(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => GGML_F32,
        DType::F16 => GGML_F16,
        DType::Bf16 => GGML_BF16,
        DType::Q8_0 => GGML_Q8_0,
    }
}

/// The `general.*` and `llama.*` metadata of a model of `c` stored as `dtype`.
pub fn llama_metadata(c: &ModelConfig, name: &str, dtype: DType) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let kv = |k: &str, v: Value| (k.to_string(), v);
    vec![
        kv("general.architecture", Value::Str("llama".into())),
        kv("general.name", Value::Str(name.into())),
        kv("general.file_type", Value::U32(file_type(dtype))),
        kv("general.quantization_version", Value::U32(2)),
        kv("general.alignment", u(ALIGNMENT)),
        kv("llama.vocab_size", u(c.vocab_size)),
        kv("llama.context_length", u(c.context_length)),
        kv("llama.embedding_length", u(c.d_model)),
        kv("llama.block_count", u(c.n_layers)),
        kv("llama.feed_forward_length", u(c.d_ff)),
        kv("llama.rope.dimension_count", u(c.d_head())),
        kv("llama.attention.head_count", u(c.n_heads)),
        kv("llama.attention.head_count_kv", u(c.n_heads)),
        kv("llama.attention.layer_norm_rms_epsilon", Value::F32(RMS_NORM_EPS)),
        kv("llama.rope.freq_base", Value::F32(c.rope_theta)),
    ]
}

/// The `tokenizer.ggml.*` metadata: GPT-2 byte-level BPE with `tok`'s tokens (padded to
/// `vocab_size`), token types, merges and end-of-text as bos/eos; no BOS/EOS added on encode.
pub fn tokenizer_metadata(tok: &Tokenizer, vocab_size: usize) -> Vec<(String, Value)> {
    let (tokens, types, merges) = gguf_vocab(tok, vocab_size);
    let kv = |k: &str, v: Value| (k.to_string(), v);
    let mut meta = vec![
        kv("tokenizer.ggml.model", Value::Str("gpt2".into())),
        kv("tokenizer.ggml.pre", Value::Str("gpt-2".into())),
        kv("tokenizer.ggml.tokens", Value::strings(tokens)),
        kv(
            "tokenizer.ggml.token_type",
            Value::Array(5, types.into_iter().map(Value::I32).collect()),
        ),
        kv("tokenizer.ggml.merges", Value::strings(merges)),
    ];
    if let Some((_, id)) = eos_token(tok) {
        meta.push(kv("tokenizer.ggml.bos_token_id", Value::U32(id)));
        meta.push(kv("tokenizer.ggml.eos_token_id", Value::U32(id)));
    }
    meta.push(kv("tokenizer.ggml.add_bos_token", Value::Bool(false)));
    meta.push(kv("tokenizer.ggml.add_eos_token", Value::Bool(false)));
    meta
}

/// The model's tensors in GGUF's names, dims and `dtype` (1-D ones f32; Q8_0 matrices whose rows
/// are not a multiple of 32 values f16), converted in parallel (one task per tensor).
pub fn gguf_tensors(model: &Model, dtype: DType) -> Result<Vec<TensorOut>> {
    tensor_names(&model.config)
        .into_par_iter()
        .map(|t| {
            let spec = spec_of(model, &t)?;
            let dims: Vec<u64> = spec.shape.iter().rev().map(|&d| d as u64).collect();
            let mut dt = if spec.shape.len() == 1 { DType::F32 } else { dtype };
            if dt == DType::Q8_0 && !dims[0].is_multiple_of(Q8_0_BLOCK as u64) {
                dt = DType::F16;
            }
            Ok(TensorOut {
                name: t.gguf,
                dims,
                ggml_type: ggml_type(dt),
                data: dt.encode(&model.params[spec.range()])?,
            })
        })
        .collect()
}

/// Writes a GGUF file to `out` through `out.tmp` and a rename; returns its size.
fn write_file(out: &Path, meta: &[(String, Value)], tensors: &[TensorOut]) -> Result<u64> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = tmp_path(out);
    let write = || -> std::io::Result<u64> {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        let n = write_gguf_to(&mut f, meta, tensors)?;
        f.flush()?;
        Ok(n)
    };
    let size = write().with_context(|| format!("cannot write {} (is the disk full?)", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    Ok(size)
}

/// Exports the checkpoint at `checkpoint` as the new GGUF file `out`, matrices as `dtype`
/// (1-D tensors stay f32, as llama.cpp's converter keeps them; a Q8_0 matrix whose rows are not a
/// multiple of 32 values is stored as f16).
pub fn export_gguf(checkpoint: &Path, out: &Path, dtype: DType) -> Result<ExportReport> {
    check_fresh_file(out)?;
    let src = load_source(checkpoint)?;
    let t1 = Instant::now();
    let c = &src.state.model;
    let mut meta = llama_metadata(c, &format!("ferrolm {}", src.name()), dtype);
    let mut warnings = Vec::new();
    match &src.tokenizer {
        Some(tok) => meta.extend(tokenizer_metadata(tok, c.vocab_size)),
        None => warnings.push(format!(
            "checkpoint {} has no tokenizer copy: the GGUF file has no tokenizer (llama.cpp needs one)",
            src.dir.display()
        )),
    }
    let tensors = gguf_tensors(&src.model, dtype)?;
    let fallback: Vec<&str> = tensors
        .iter()
        .filter(|t| dtype == DType::Q8_0 && t.dims.len() == 2 && t.ggml_type != GGML_Q8_0)
        .map(|t| t.name.as_str())
        .collect();
    if !fallback.is_empty() {
        warnings.push(format!(
            "rows not a multiple of {Q8_0_BLOCK} values, stored as f16: {}",
            fallback.join(", ")
        ));
    }
    let convert_seconds = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let size = write_file(out, &meta, &tensors)?;
    Ok(ExportReport {
        checkpoint: src.dir,
        files: vec![(out.to_path_buf(), size)],
        load_seconds: src.load_seconds,
        convert_seconds,
        write_seconds: t2.elapsed().as_secs_f64(),
        warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
    })
}

/// A tensor descriptor read from a GGUF file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

/// A parsed GGUF file (metadata in file order, tensor descriptors, the data section's start).
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub data_start: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            bail!(
                "truncated GGUF: {n} bytes wanted at offset {} of {}",
                self.pos,
                self.buf.len()
            )
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()? as usize;
        let at = self.pos;
        String::from_utf8(self.take(n)?.to_vec()).with_context(|| format!("GGUF string at {at} is not UTF-8"))
    }
    fn value(&mut self, t: u32) -> Result<Value> {
        Ok(match t {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => Value::Bool(self.arr::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let et = self.u32()?;
                let n = self.u64()? as usize;
                let mut items = Vec::with_capacity(n.min(1 << 24));
                for _ in 0..n {
                    items.push(self.value(et)?);
                }
                Value::Array(et, items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            _ => bail!("unknown GGUF value type {t} at offset {}", self.pos),
        })
    }
}

impl GgufFile {
    /// Parses the header, metadata and tensor descriptors of `buf`.
    pub fn parse(buf: &[u8]) -> Result<GgufFile> {
        let mut r = Reader { buf, pos: 0 };
        if r.take(4)? != MAGIC {
            bail!("not a GGUF file (no GGUF magic)");
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            bail!("GGUF version {version} (this reader knows 2 and 3)");
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut metadata = Vec::new();
        for _ in 0..n_kv {
            let k = r.string()?;
            let t = r.u32()?;
            metadata.push((k, r.value(t)?));
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()?;
            let dims = (0..nd).map(|_| r.u64()).collect::<Result<_>>()?;
            let ggml_type = r.u32()?;
            let offset = r.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let align = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, Value::U32(a))) => *a as usize,
            _ => ALIGNMENT,
        };
        Ok(GgufFile {
            version,
            metadata,
            tensors,
            data_start: r.pos.div_ceil(align) * align,
        })
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The bytes of tensor `name` in `buf` (the buffer this was parsed from).
    pub fn tensor_data<'a>(&self, buf: &'a [u8], name: &str) -> Result<(&TensorInfo, &'a [u8])> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .with_context(|| format!("no tensor {name}"))?;
        let n: u64 = t.dims.iter().product();
        let len = match t.ggml_type {
            GGML_F32 => n * 4,
            GGML_F16 | GGML_BF16 => n * 2,
            GGML_Q8_0 => n / 32 * 34,
            other => bail!("tensor {name}: ggml type {other} not supported by this reader"),
        } as usize;
        let start = self.data_start + t.offset as usize;
        let data = buf
            .get(start..start + len)
            .with_context(|| format!("tensor {name}: data past the end of the file"))?;
        Ok((t, data))
    }
}
