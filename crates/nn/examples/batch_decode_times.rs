//! Time of one continuous-batching decode step (`BatchDecoder::step`) of the small preset at
//! batch 1, 2, 4, 8 and 16 (each sequence $PLEN positions in, default 64), beside the batch-1 decode engine
//! (`forward_infer` of one token), and the tokens/s each gives; medians of several runs.
//! `cargo run --release -p ferrolm-nn --example batch_decode_times [f32|bf16] [batches]`
use ferrolm_nn::model::{BatchDecoder, KvCache, Model};
use ferrolm_nn::{ModelConfig, Precision};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let precision = match args.get(1).map(|s| s.as_str()) {
        Some("bf16") => Precision::Bf16,
        _ => Precision::F32,
    };
    let batches: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![1, 2, 4, 8, 16]);
    let c = ModelConfig::small();
    let mut model = Model::new(c.clone(), 1).unwrap();
    model.precision = precision;
    let plen: usize = std::env::var("PLEN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let prompt: Vec<u32> = (0..plen).map(|i| (i * 37 % c.vocab_size) as u32).collect();
    let vocab = c.vocab_size;
    // The batch-1 engine.
    let mut cache = KvCache::new(&c, 1, c.context_length);
    let mut logits = vec![0.0f32; vocab];
    let mut single = Vec::new();
    for _ in 0..7 {
        cache.reset();
        model.forward_infer(&mut cache, &prompt, &mut logits).unwrap();
        let t = Instant::now();
        for i in 0..32u32 {
            model.forward_infer(&mut cache, &[i], &mut logits).unwrap();
        }
        single.push(t.elapsed().as_secs_f64() / 32.0);
    }
    let t1 = median(single);
    println!(
        "{precision:?} forward_infer batch 1: {:.2} ms/step, {:.0} tok/s",
        t1 * 1e3,
        1.0 / t1
    );
    let mut dec = BatchDecoder::new(&model);
    for &b in &batches {
        let mut caches: Vec<KvCache> = (0..b).map(|_| KvCache::new(&c, 1, c.context_length)).collect();
        let mut outs = vec![vec![0.0f32; vocab]; b];
        let mut times = Vec::new();
        for _ in 0..7 {
            for (cache, out) in caches.iter_mut().zip(outs.iter_mut()) {
                cache.reset();
                model.forward_infer(cache, &prompt, out).unwrap();
            }
            let t = Instant::now();
            for i in 0..32u32 {
                let tokens: Vec<u32> = (0..b as u32).map(|j| (i * 7 + j) % vocab as u32).collect();
                let mut cs: Vec<&mut KvCache> = caches.iter_mut().collect();
                let mut os: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
                dec.step(&model, &mut cs, &tokens, &mut os).unwrap();
            }
            times.push(t.elapsed().as_secs_f64() / 32.0);
        }
        let t = median(times);
        println!(
            "{precision:?} BatchDecoder batch {b:2}: {:.2} ms/step, {:.0} tok/s, {:.2}x batch-1 engine",
            t * 1e3,
            b as f64 / t,
            b as f64 / t * t1
        );
    }
}
