//! The metrics file: appending, truncation on resume, a torn last line.

use ferrolm_train::metrics::{read, MetricsRecord, MetricsWriter};

fn rec(step: u64) -> MetricsRecord {
    MetricsRecord {
        step,
        tokens: step * 10,
        wall_s: step as f64 * 0.5,
        train_loss: Some(3.0 - step as f32 * 0.1),
        val_loss: step.is_multiple_of(2).then_some(2.5),
        lr: Some(1e-3),
        grad_norm: Some(0.75),
        tokens_per_s: Some(20.0),
    }
}

#[test]
fn records_round_trip_and_resume_drops_later_steps() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("metrics.jsonl");
    let mut w = MetricsWriter::open(&p, None).unwrap();
    for s in 1..=6 {
        w.write(&rec(s)).unwrap();
    }
    drop(w);
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 6);
    let line: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(line["step"], 2);
    assert_eq!(line["tokens"], 20);
    assert_eq!(line["wall_s"], 1.0);
    assert_eq!(line["val_loss"], 2.5);
    assert_eq!(line["grad_norm"], 0.75);
    assert_eq!(read(&p).unwrap(), (1..=6).map(rec).collect::<Vec<_>>());

    // Resuming at step 4 (the interrupted run logged 5 and 6 after its last checkpoint).
    let mut w = MetricsWriter::open(&p, Some(4)).unwrap();
    w.write(&rec(5)).unwrap();
    drop(w);
    assert_eq!(read(&p).unwrap(), (1..=5).map(rec).collect::<Vec<_>>());

    // A torn last line (crash mid-write) is skipped; a corrupt line elsewhere is an error.
    std::fs::write(
        &p,
        format!(
            "{}\n{{\"step\": 2, \"tok",
            serde_json::to_string(&rec(1)).unwrap()
        ),
    )
    .unwrap();
    assert_eq!(read(&p).unwrap(), vec![rec(1)]);
    std::fs::write(
        &p,
        format!("garbage\n{}\n", serde_json::to_string(&rec(1)).unwrap()),
    )
    .unwrap();
    assert!(format!("{:#}", read(&p).unwrap_err()).contains("line 1"));
    // A fresh run truncates.
    MetricsWriter::open(&p, None).unwrap();
    assert!(read(&p).unwrap().is_empty());
}
