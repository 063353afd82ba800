//! The GGUF writer against hand-laid bytes and the reader, Q8_0 blocks against hand-computed ones,
//! and a whole checkpoint export read back.

use ferrolm_interop::dtype::{q8_0_block, q8_0_decode, DType};
use ferrolm_interop::export_gguf;
use ferrolm_interop::gguf::{write_gguf, GgufFile, TensorOut, Value, GGML_F16, GGML_F32, GGML_Q8_0};
use ferrolm_interop::hf_import::write_checkpoint;
use ferrolm_nn::model::Model;
use ferrolm_nn::ModelConfig;
use ferrolm_tokenizer::Tokenizer;
use std::path::Path;

#[test]
fn a_minimal_file_is_laid_out_as_the_spec_says() {
    let meta = vec![("a".to_string(), Value::U32(7))];
    let t = TensorOut {
        name: "t".into(),
        dims: vec![2],
        ggml_type: GGML_F32,
        data: [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let bytes = write_gguf(&meta, &[t]);
    let mut want: Vec<u8> = b"GGUF".to_vec();
    want.extend(3u32.to_le_bytes()); // version
    want.extend(1u64.to_le_bytes()); // tensors
    want.extend(1u64.to_le_bytes()); // key/values
    want.extend(1u64.to_le_bytes()); // "a"
    want.push(b'a');
    want.extend(4u32.to_le_bytes()); // UINT32
    want.extend(7u32.to_le_bytes());
    want.extend(1u64.to_le_bytes()); // "t"
    want.push(b't');
    want.extend(1u32.to_le_bytes()); // n_dims
    want.extend(2u64.to_le_bytes());
    want.extend(0u32.to_le_bytes()); // F32
    want.extend(0u64.to_le_bytes()); // offset
    assert_eq!(want.len(), 74);
    want.resize(96, 0); // 74 bytes of header, padded to the 32-byte alignment
    want.extend(1.0f32.to_le_bytes());
    want.extend(2.0f32.to_le_bytes());
    want.resize(128, 0);
    assert_eq!(bytes, want);
}

#[test]
fn every_value_type_and_tensor_reads_back() {
    let meta: Vec<(String, Value)> = vec![
        ("u8".into(), Value::U8(200)),
        ("i8".into(), Value::I8(-5)),
        ("u16".into(), Value::U16(60000)),
        ("i16".into(), Value::I16(-30000)),
        ("u32".into(), Value::U32(4_000_000_000)),
        ("i32".into(), Value::I32(-7)),
        ("f32".into(), Value::F32(1e-5)),
        ("bool".into(), Value::Bool(true)),
        ("str".into(), Value::Str("héllo".into())),
        (
            "arr".into(),
            Value::strings(["a".to_string(), "Ġb c".to_string()]),
        ),
        ("ints".into(), Value::Array(5, vec![Value::I32(1), Value::I32(3)])),
        ("u64".into(), Value::U64(1 << 40)),
        ("i64".into(), Value::I64(-(1 << 40))),
        ("f64".into(), Value::F64(0.1)),
    ];
    let x: Vec<f32> = (0..96).map(|i| (i as f32 - 40.0) / 7.0).collect();
    let tensors = vec![
        TensorOut {
            name: "a".into(),
            dims: vec![3],
            ggml_type: GGML_F32,
            data: DType::F32.encode(&x[..3]).unwrap(),
        },
        TensorOut {
            name: "b".into(),
            dims: vec![32, 3],
            ggml_type: GGML_Q8_0,
            data: DType::Q8_0.encode(&x).unwrap(),
        },
        TensorOut {
            name: "c".into(),
            dims: vec![5],
            ggml_type: GGML_F16,
            data: DType::F16.encode(&x[..5]).unwrap(),
        },
    ];
    let bytes = write_gguf(&meta, &tensors);
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata, meta);
    for t in &tensors {
        let (info, data) = f.tensor_data(&bytes, &t.name).unwrap();
        assert_eq!((&info.dims, info.ggml_type), (&t.dims, t.ggml_type));
        assert_eq!(data, t.data.as_slice());
        assert_eq!((f.data_start + info.offset as usize) % 32, 0, "aligned");
    }
    assert!(GgufFile::parse(&bytes[..100]).is_err());
    assert!(GgufFile::parse(b"GGML\x03\0\0\0").is_err());
}

#[test]
fn q8_0_blocks_match_hand_computed_ones() {
    // amax 127: d = 1.0 (f16 0x3C00), q = round half away from zero.
    let mut x = [0.0f32; 32];
    x[..8].copy_from_slice(&[127.0, -127.0, 3.4, -3.6, 0.5, -0.5, 2.5, 100.49]);
    let mut want = [0u8; 34];
    want[..2].copy_from_slice(&[0x00, 0x3C]);
    for (w, q) in want[2..10].iter_mut().zip([127i8, -127, 3, -4, 1, -1, 3, 100]) {
        *w = q as u8;
    }
    assert_eq!(q8_0_block(&x), want);
    // One 1.0 among zeros: d = 1/127 = 2^-7·1.0079 → f16 exponent 8, mantissa 8: 0x2008.
    let mut y = [0.0f32; 32];
    y[5] = 1.0;
    let mut want = [0u8; 34];
    want[..2].copy_from_slice(&[0x08, 0x20]);
    want[2 + 5] = 127;
    assert_eq!(q8_0_block(&y), want);
    // All zeros: d = 0, q = 0.
    assert_eq!(q8_0_block(&[0.0; 32]), [0u8; 34]);
    // Decoding is within half a step of the input.
    let z: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 31.0) * 0.013).collect();
    let back = q8_0_decode(&DType::Q8_0.encode(&z).unwrap());
    for (blk_z, blk_b) in z.chunks(32).zip(back.chunks(32)) {
        let step = blk_z.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
        for (a, b) in blk_z.iter().zip(blk_b) {
            assert!((a - b).abs() <= 0.5 * step * 1.01, "{a} vs {b}");
        }
    }
    assert!(DType::Q8_0.encode(&[0.0; 33]).is_err());
}

fn checkpoint(dir: &Path, c: ModelConfig) -> (std::path::PathBuf, Model, Tokenizer) {
    let text = "the cat sat on the mat. the dog ran to the cat. ".repeat(20);
    let specials = vec!["<|endoftext|>".to_string()];
    let (vocab, merges) = ferrolm_tokenizer::train_bpe_from_str(&text, 280, &specials).unwrap();
    let tok = Tokenizer::new(vocab, &merges, &specials).unwrap();
    let model = Model::new(c, 11).unwrap();
    (
        write_checkpoint(dir, &model, Some(&tok), Path::new("test")).unwrap(),
        model,
        tok,
    )
}

#[test]
fn a_checkpoint_exports_as_a_llama_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    // vocab 300 > the tokenizer's 280 tokens: padded with unused entries; d_ff 48 is not a
    // multiple of 32, so Q8_0 falls back to f16 for ffn_down (rows of d_ff values).
    let c = ModelConfig {
        vocab_size: 300,
        context_length: 32,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        d_ff: 48,
        ..ModelConfig::tiny()
    };
    let (ck, model, tok) = checkpoint(&tmp.path().join("run"), c.clone());
    let out = tmp.path().join("m.gguf");
    export_gguf(&ck, &out, DType::F32).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.get("general.architecture"), Some(&Value::Str("llama".into())));
    assert_eq!(f.get("llama.embedding_length"), Some(&Value::U32(64)));
    assert_eq!(f.get("llama.block_count"), Some(&Value::U32(2)));
    assert_eq!(f.get("llama.feed_forward_length"), Some(&Value::U32(48)));
    assert_eq!(f.get("llama.attention.head_count_kv"), Some(&Value::U32(4)));
    assert_eq!(f.get("llama.rope.dimension_count"), Some(&Value::U32(16)));
    assert_eq!(
        f.get("llama.attention.layer_norm_rms_epsilon"),
        Some(&Value::F32(1e-5))
    );
    assert_eq!(f.get("llama.rope.freq_base"), Some(&Value::F32(10000.0)));
    assert_eq!(f.get("tokenizer.ggml.model"), Some(&Value::Str("gpt2".into())));
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    assert_eq!(f.get("tokenizer.ggml.eos_token_id"), Some(&Value::U32(eot)));
    let Some(Value::Array(8, tokens)) = f.get("tokenizer.ggml.tokens") else {
        panic!("no tokens")
    };
    assert_eq!(tokens.len(), 300);
    assert_eq!(tokens[b' ' as usize], Value::Str("Ġ".into()));
    assert_eq!(tokens[eot as usize], Value::Str("<|endoftext|>".into()));
    assert_eq!(tokens[299], Value::Str("[PAD299]".into()));
    let Some(Value::Array(5, types)) = f.get("tokenizer.ggml.token_type") else {
        panic!("no types")
    };
    assert_eq!(
        (&types[eot as usize], &types[0], &types[299]),
        (&Value::I32(3), &Value::I32(1), &Value::I32(5))
    );
    let Some(Value::Array(8, merges)) = f.get("tokenizer.ggml.merges") else {
        panic!("no merges")
    };
    assert_eq!(merges.len(), tok.num_merges());
    assert_eq!(f.tensors.len(), c.param_specs().len());
    // No permutation for GGUF: the q rows are ferrolm's, dims innermost first.
    let (info, data) = f.tensor_data(&bytes, "blk.1.attn_q.weight").unwrap();
    assert_eq!(info.dims, vec![64, 64]);
    assert_eq!(
        data,
        DType::F32
            .encode(model.param("layers.1.attn.q_proj.weight").unwrap())
            .unwrap()
    );
    let (info, _) = f.tensor_data(&bytes, "blk.0.ffn_down.weight").unwrap();
    assert_eq!(info.dims, vec![48, 64]);
    assert!(export_gguf(&ck, &out, DType::F32)
        .unwrap_err()
        .to_string()
        .contains("already exists"));

    let q8 = tmp.path().join("q8.gguf");
    let r = export_gguf(&ck, &q8, DType::Q8_0).unwrap();
    assert!(r.warning.unwrap().contains("blk.0.ffn_down.weight"));
    let bytes = std::fs::read(&q8).unwrap();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.get("general.file_type"), Some(&Value::U32(7)));
    let (info, data) = f.tensor_data(&bytes, "blk.0.ffn_gate.weight").unwrap();
    assert_eq!(info.ggml_type, GGML_Q8_0);
    assert_eq!(
        data,
        DType::Q8_0
            .encode(model.param("layers.0.ffn.w1.weight").unwrap())
            .unwrap()
    );
    assert_eq!(
        f.tensor_data(&bytes, "blk.0.ffn_down.weight")
            .unwrap()
            .0
            .ggml_type,
        GGML_F16
    );
    assert_eq!(
        f.tensor_data(&bytes, "output_norm.weight").unwrap().0.ggml_type,
        GGML_F32
    );
}
