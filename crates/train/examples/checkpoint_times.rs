//! What checksums cost a checkpoint of the small preset (22.7M parameters): the median time of
//! `checkpoint::save` (which writes and fsyncs model, optimizer, state and checksums), of
//! `checkpoint::load` (which verifies them first), and of the CRC-32C over the same bytes alone.
//!
//! cargo run --release -p ferrolm-train --example checkpoint_times [-- DIR [REPEATS]]
//! (DIR: where to write, default a temporary folder; REPEATS default 7)

use ferrolm_nn::model::Model;
use ferrolm_nn::optim::AdamW;
use ferrolm_nn::{ModelConfig, Rng};
use ferrolm_train::checkpoint::{self, CheckpointState, ScheduleState};
use ferrolm_train::data::{BatchSampler, Sampling};
use ferrolm_train::TrainConfig;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let tmp = tempfile_dir();
    let dir = args.get(1).map(std::path::PathBuf::from).unwrap_or(tmp);
    let repeats: usize = args.get(2).map_or(Ok(7), |s| s.parse())?;
    let cfg = TrainConfig {
        model: ModelConfig::preset("small").expect("preset"),
        ..TrainConfig::default()
    };
    let model = Model::new(cfg.model.clone(), 1)?;
    let mut optim = AdamW::new(cfg.adamw(), model.params.len());
    let mut rng = Rng::new(2);
    optim.m.iter_mut().for_each(|x| *x = rng.normal() as f32);
    optim.v.iter_mut().for_each(|x| *x = rng.uniform() as f32);
    let state = CheckpointState {
        format_version: checkpoint::FORMAT_VERSION,
        step: 1,
        tokens_seen: 0,
        wall_seconds: 0.0,
        model: cfg.model.clone(),
        optimizer: cfg.adamw(),
        optimizer_t: 1,
        no_decay: vec![],
        schedule: ScheduleState {
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 0,
            cosine_steps: 10,
        },
        sampler: BatchSampler::new(Sampling::Random, Rng::new(3)),
        tokenizer: None,
        val_loss: None,
        train_loss: None,
        config: cfg.clone(),
    };
    let (mut save, mut load, mut crc) = (vec![], vec![], vec![]);
    for _ in 0..repeats {
        let t = Instant::now();
        let ck = checkpoint::save(&dir, &state, &model, &optim, None)?;
        save.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        checkpoint::load(&ck, true)?;
        load.push(t.elapsed().as_secs_f64());
        let bytes: Vec<Vec<u8>> = ["model.safetensors", "optimizer.safetensors", "state.json"]
            .iter()
            .map(|f| std::fs::read(ck.join(f)))
            .collect::<Result<_, _>>()?;
        let t = Instant::now();
        let sum: u32 = bytes.iter().map(|b| crc32c::crc32c(b)).fold(0, |a, c| a ^ c);
        crc.push(t.elapsed().as_secs_f64());
        std::hint::black_box(sum);
    }
    let (s, l, c) = (median(save), median(load), median(crc));
    let mb = (model.params.len() * 12) as f64 / 1e6;
    println!(
        "small preset ({:.1}M params, {mb:.0} MB of tensors), {repeats} repeats, medians: save {:.1} ms, \
         load+verify {:.1} ms, CRC-32C of the files alone {:.1} ms ({:.1} GB/s) = {:.1}% of a save",
        model.params.len() as f64 / 1e6,
        s * 1e3,
        l * 1e3,
        c * 1e3,
        mb / 1e3 / c,
        100.0 * c / s
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ferrolm-checkpoint-times-{}", std::process::id()))
}
