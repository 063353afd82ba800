//! Hugging Face export and import without Python: names, the q/k permutation, dtypes, tied and
//! sharded imports, the round trip, and every refusal.

use ferrolm_interop::hf_import::write_checkpoint;
use ferrolm_interop::llama::{permute_to_half, permute_to_interleaved, tensor_names, Rows};
use ferrolm_interop::{export_hf, import_hf, DType};
use ferrolm_nn::model::Model;
use ferrolm_nn::{Ffn, ModelConfig, Norm, Position, Rng};
use ferrolm_tokenizer::Tokenizer;
use ferrolm_train::checkpoint;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// safetensors contents: name → (dtype, shape, bytes).
type St = HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

#[path = "../../train/tests/common/tiny.rs"]
mod tiny;

fn config() -> ModelConfig {
    tiny::tiny_config(300, 32)
}

fn tokenizer() -> Tokenizer {
    let text = "the cat sat on the mat. the dog ran to the cat. ".repeat(20);
    let specials = vec!["<|endoftext|>".to_string()];
    let (vocab, merges) = ferrolm_tokenizer::train_bpe_from_str(&text, 290, &specials).unwrap();
    Tokenizer::new(vocab, &merges, &specials).unwrap()
}

/// A checkpoint of a random model of `c` (with a tokenizer) under `dir`.
fn make_checkpoint(dir: &Path, c: ModelConfig) -> (PathBuf, Model) {
    let model = Model::new(c, 7).unwrap();
    let ck = write_checkpoint(dir, &model, Some(&tokenizer()), Path::new("test")).unwrap();
    (ck, model)
}

fn read_st(path: &Path) -> St {
    let buf = fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&buf).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
        .collect()
}

fn write_st(path: &Path, tensors: &St) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    fs::write(path, safetensors::tensor::serialize(views, &None).unwrap()).unwrap();
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn names_cover_every_parameter_in_hf_convention() {
    let c = config();
    let names = tensor_names(&c);
    let specs: Vec<String> = c.param_specs().into_iter().map(|s| s.name).collect();
    let ours: Vec<String> = names.iter().map(|t| t.ferrolm.clone()).collect();
    assert_eq!(ours, specs, "one entry per parameter, in state-dict order");
    let find = |f: &str| names.iter().find(|t| t.ferrolm == f).unwrap();
    let expect = [
        (
            "token_embeddings.weight",
            "model.embed_tokens.weight",
            "token_embd.weight",
        ),
        (
            "layers.1.attn.q_proj.weight",
            "model.layers.1.self_attn.q_proj.weight",
            "blk.1.attn_q.weight",
        ),
        (
            "layers.1.attn.k_proj.weight",
            "model.layers.1.self_attn.k_proj.weight",
            "blk.1.attn_k.weight",
        ),
        (
            "layers.1.attn.v_proj.weight",
            "model.layers.1.self_attn.v_proj.weight",
            "blk.1.attn_v.weight",
        ),
        (
            "layers.1.attn.output_proj.weight",
            "model.layers.1.self_attn.o_proj.weight",
            "blk.1.attn_output.weight",
        ),
        (
            "layers.0.ln1.weight",
            "model.layers.0.input_layernorm.weight",
            "blk.0.attn_norm.weight",
        ),
        (
            "layers.0.ln2.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "blk.0.ffn_norm.weight",
        ),
        (
            "layers.0.ffn.w1.weight",
            "model.layers.0.mlp.gate_proj.weight",
            "blk.0.ffn_gate.weight",
        ),
        (
            "layers.0.ffn.w3.weight",
            "model.layers.0.mlp.up_proj.weight",
            "blk.0.ffn_up.weight",
        ),
        (
            "layers.0.ffn.w2.weight",
            "model.layers.0.mlp.down_proj.weight",
            "blk.0.ffn_down.weight",
        ),
        ("ln_final.weight", "model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "lm_head.weight", "output.weight"),
    ];
    for (f, h, g) in expect {
        let t = find(f);
        assert_eq!((t.hf.as_str(), t.gguf.as_str()), (h, g), "{f}");
        let rope = f.contains("q_proj") || f.contains("k_proj");
        assert_eq!(t.rows == Rows::Rope, rope, "{f}");
    }
}

#[test]
fn qk_permutation_round_trips_bitwise_and_moves_pairs_to_halves() {
    let mut rng = Rng::new(3);
    for (heads, dh, cols) in [(4, 8, 32), (16, 32, 512), (3, 2, 5)] {
        let w: Vec<f32> = (0..heads * dh * cols)
            .map(|_| rng.trunc_normal(1.0, 3.0) as f32)
            .collect();
        let p = permute_to_half(&w, heads, dh, cols);
        if dh > 2 {
            assert_ne!(bits(&p), bits(&w), "d_head 2 is the only identity");
        }
        assert_eq!(bits(&permute_to_interleaved(&p, heads, dh, cols)), bits(&w));
        // Row 2j+t of head h goes to row t·dh/2 + j.
        let (h, j, t) = (heads - 1, dh / 2 - 1, 0);
        let src = h * dh + 2 * j + t;
        let dst = h * dh + t * dh / 2 + j;
        assert_eq!(&p[dst * cols..(dst + 1) * cols], &w[src * cols..(src + 1) * cols]);
    }
}

#[test]
fn export_writes_a_llama_directory_and_import_round_trips_bitwise() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, model) = make_checkpoint(&tmp.path().join("run"), config());
    let out = tmp.path().join("hf");
    let report = export_hf(&ck, &out, DType::F32).unwrap();
    assert!(report.warning.is_none());
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "README.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cfg: Value = serde_json::from_slice(&fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"], json!(["LlamaForCausalLM"]));
    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["hidden_size"], 32);
    assert_eq!(cfg["intermediate_size"], 64);
    assert_eq!(cfg["num_key_value_heads"], 4);
    assert_eq!(cfg["rms_norm_eps"], json!(1e-5));
    assert_eq!(cfg["rope_theta"], json!(10000.0));
    assert_eq!(cfg["tie_word_embeddings"], false);
    let eot = tokenizer().token_to_id("<|endoftext|>").unwrap();
    assert_eq!(cfg["eos_token_id"], eot);
    let tc: Value = serde_json::from_slice(&fs::read(out.join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(tc["eos_token"], "<|endoftext|>");
    assert_eq!(tc["clean_up_tokenization_spaces"], false);
    let card = fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("LlamaForCausalLM") && card.contains(&config().num_params().to_string()));

    let st = read_st(&out.join("model.safetensors"));
    assert_eq!(st.len(), config().param_specs().len());
    let q = &st["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!((q.0, q.1.clone()), (Dtype::F32, vec![32, 32]));
    let want = permute_to_half(model.param("layers.0.attn.q_proj.weight").unwrap(), 4, 8, 32);
    assert_eq!(bits(&f32s(&q.2)), bits(&want));
    let up = &st["model.layers.1.mlp.up_proj.weight"];
    assert_eq!(
        bits(&f32s(&up.2)),
        bits(model.param("layers.1.ffn.w3.weight").unwrap())
    );

    let back = tmp.path().join("imported");
    let r = import_hf(&out, &back).unwrap();
    assert!(!r.tied && r.warning.is_none());
    let ck2 = checkpoint::load_model(&checkpoint::resolve(&back).unwrap()).unwrap();
    assert_eq!(ck2.model.config, model.config);
    assert_eq!(
        bits(&ck2.model.params),
        bits(&model.params),
        "HF -> ferrolm is the exact inverse"
    );
    let tok = ferrolm_train::generate::checkpoint_tokenizer(&ck2.dir).unwrap();
    assert_eq!(tok.fingerprint(), tokenizer().fingerprint());
}

#[test]
fn half_precision_exports_round_like_the_types_and_import_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, model) = make_checkpoint(&tmp.path().join("run"), config());
    for (dtype, st_dtype, torch) in [
        (DType::Bf16, Dtype::BF16, "bfloat16"),
        (DType::F16, Dtype::F16, "float16"),
    ] {
        let out = tmp.path().join(format!("hf-{dtype}"));
        export_hf(&ck, &out, dtype).unwrap();
        let cfg: Value = serde_json::from_slice(&fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["torch_dtype"], torch);
        let st = read_st(&out.join("model.safetensors"));
        assert!(st.values().all(|t| t.0 == st_dtype));
        let back = tmp.path().join(format!("back-{dtype}"));
        import_hf(&out, &back).unwrap();
        let m2 = checkpoint::load_model(&checkpoint::resolve(&back).unwrap())
            .unwrap()
            .model;
        let rounded: Vec<f32> = model
            .params
            .iter()
            .map(|&v| match dtype {
                DType::Bf16 => half::bf16::from_f32(v).to_f32(),
                _ => half::f16::from_f32(v).to_f32(),
            })
            .collect();
        assert_eq!(bits(&m2.params), bits(&rounded), "{dtype}");
    }
}

/// Exports `config()` to f32 HF and returns (tempdir, hf dir, model).
fn exported() -> (tempfile::TempDir, PathBuf, Model) {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, model) = make_checkpoint(&tmp.path().join("run"), config());
    let out = tmp.path().join("hf");
    export_hf(&ck, &out, DType::F32).unwrap();
    (tmp, out, model)
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("config.json");
    let mut v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn tied_and_sharded_imports() {
    let (tmp, hf, model) = exported();
    // Tied: no lm_head tensor; the embedding becomes the head.
    let mut st = read_st(&hf.join("model.safetensors"));
    st.remove("lm_head.weight");
    let (a, b): (Vec<_>, Vec<_>) = st.into_iter().partition(|(n, _)| n.contains("layers.0."));
    let (a, b): (HashMap<_, _>, HashMap<_, _>) = (a.into_iter().collect(), b.into_iter().collect());
    fs::remove_file(hf.join("model.safetensors")).unwrap();
    write_st(&hf.join("model-00001-of-00002.safetensors"), &a);
    write_st(&hf.join("model-00002-of-00002.safetensors"), &b);
    let mut map = serde_json::Map::new();
    for n in a.keys() {
        map.insert(n.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for n in b.keys() {
        map.insert(n.clone(), json!("model-00002-of-00002.safetensors"));
    }
    let index = json!({"metadata": {}, "weight_map": map});
    fs::write(hf.join("model.safetensors.index.json"), index.to_string()).unwrap();
    edit_config(&hf, |v| v["tie_word_embeddings"] = json!(true));
    let r = import_hf(&hf, &tmp.path().join("tied")).unwrap();
    assert!(r.tied);
    assert_eq!(r.weight_files.len(), 2);
    let m2 = checkpoint::load_model(&r.checkpoint).unwrap().model;
    assert_eq!(m2.param("lm_head.weight"), model.param("token_embeddings.weight"));
    assert_eq!(
        m2.param("layers.1.ffn.w2.weight"),
        model.param("layers.1.ffn.w2.weight")
    );
    assert_eq!(
        m2.param("layers.0.attn.k_proj.weight"),
        model.param("layers.0.attn.k_proj.weight")
    );
    // Untied without lm_head is an error naming both.
    edit_config(&hf, |v| v["tie_word_embeddings"] = json!(false));
    let e = import_hf(&hf, &tmp.path().join("untied")).unwrap_err();
    assert!(format!("{e:#}").contains("lm_head.weight"), "{e:#}");
}

fn import_err(hf: &Path, tmp: &Path, name: &str) -> String {
    let e = import_hf(hf, &tmp.join(name)).unwrap_err();
    assert!(
        !tmp.join(name).join("step-000000000").exists(),
        "no checkpoint on error"
    );
    format!("{e:#}")
}

#[test]
fn import_refuses_what_ferrolm_cannot_compute_naming_the_field() {
    let cases: [(&str, Value, &str); 8] = [
        ("attention_bias", json!(true), "attention_bias"),
        ("mlp_bias", json!(true), "mlp_bias"),
        ("num_key_value_heads", json!(2), "grouped-query"),
        (
            "rope_scaling",
            json!({"rope_type": "linear", "factor": 2.0}),
            "rope_scaling",
        ),
        ("hidden_act", json!("gelu"), "hidden_act"),
        ("rms_norm_eps", json!(1e-6), "rms_norm_eps"),
        ("model_type", json!("mistral"), "model_type"),
        ("head_dim", json!(16), "head_dim"),
    ];
    for (field, value, needle) in cases {
        let (tmp, hf, _) = exported();
        edit_config(&hf, |v| v[field] = value.clone());
        let e = import_err(&hf, tmp.path(), "x");
        assert!(e.contains(needle) && e.contains(field), "{field}: {e}");
    }
}

#[test]
fn import_refuses_bad_tensors_and_tokenizers() {
    let (tmp, hf, _) = exported();
    let orig = read_st(&hf.join("model.safetensors"));
    let rewrite = |f: &dyn Fn(&mut St)| {
        let mut st = orig.clone();
        f(&mut st);
        write_st(&hf.join("model.safetensors"), &st);
    };
    rewrite(&|st| {
        st.insert(
            "model.layers.0.self_attn.q_proj.bias".into(),
            (Dtype::F32, vec![32], vec![0; 128]),
        );
    });
    assert!(import_err(&hf, tmp.path(), "a").contains("q_proj.bias: biases"));
    rewrite(&|st| {
        st.insert("model.norm.weight".into(), (Dtype::I64, vec![32], vec![0; 256]));
    });
    assert!(import_err(&hf, tmp.path(), "b").contains("model.norm.weight has dtype I64"));
    rewrite(&|st| {
        st.remove("model.layers.1.mlp.up_proj.weight");
    });
    assert!(import_err(&hf, tmp.path(), "c").contains("model.layers.1.mlp.up_proj.weight is missing"));
    rewrite(&|st| {
        st.insert("model.norm.weight".into(), (Dtype::F32, vec![16], vec![0; 64]));
    });
    assert!(import_err(&hf, tmp.path(), "d").contains("model.norm.weight has shape [16]"));
    rewrite(&|st| {
        st.insert("model.extra.weight".into(), (Dtype::F32, vec![1], vec![0; 4]));
    });
    assert!(import_err(&hf, tmp.path(), "e").contains("model.extra.weight"));
    rewrite(&|_| {});
    // Another tokenizer model type.
    let tp = hf.join("tokenizer.json");
    let mut tj: Value = serde_json::from_slice(&fs::read(&tp).unwrap()).unwrap();
    tj["model"]["type"] = json!("WordPiece");
    fs::write(&tp, tj.to_string()).unwrap();
    let e = import_err(&hf, tmp.path(), "f");
    assert!(e.contains("WordPiece") && e.contains("tokenizer.json"), "{e}");
    // An existing non-empty output is never touched.
    let busy = tmp.path().join("busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("keep.txt"), "x").unwrap();
    assert!(format!("{:#}", import_hf(&hf, &busy).unwrap_err()).contains("not empty"));
    assert_eq!(fs::read_to_string(busy.join("keep.txt")).unwrap(), "x");
}

#[test]
fn export_refuses_ablations_llama_cannot_express_naming_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            ModelConfig {
                norm: Norm::Post,
                ..config()
            },
            "model.norm = \"post\"",
        ),
        (
            ModelConfig {
                norm: Norm::None,
                ..config()
            },
            "model.norm = \"none\"",
        ),
        (
            ModelConfig {
                position: Position::None,
                ..config()
            },
            "model.position = \"none\"",
        ),
        (
            ModelConfig {
                ffn: Ffn::Silu,
                ..config()
            },
            "model.ffn = \"silu\"",
        ),
    ];
    for (i, (c, needle)) in cases.into_iter().enumerate() {
        let (ck, _) = make_checkpoint(&tmp.path().join(format!("run{i}")), c);
        for gguf in [false, true] {
            let out = tmp.path().join(format!("out{i}{gguf}.gguf"));
            let e = if gguf {
                ferrolm_interop::export_gguf(&ck, &out, DType::F32)
            } else {
                export_hf(&ck, &out, DType::F32)
            }
            .unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{e:#}");
            assert!(!out.exists());
        }
    }
    let (ck, _) = make_checkpoint(&tmp.path().join("ok"), config());
    let e = export_hf(&ck, &tmp.path().join("q8"), DType::Q8_0).unwrap_err();
    assert!(e.to_string().contains("q8_0 is for GGUF only"));
}
