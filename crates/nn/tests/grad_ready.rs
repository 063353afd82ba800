//! The backward's ready hook (`Model::forward_backward_with`, used to overlap data-parallel
//! communication with the backward): it reports `grad_ready_order` exactly, each range already
//! holding its final gradient, and the gradients are bitwise those of `forward_backward`, for
//! every ablation and both precisions.

use ferrolm_nn::model::{Activations, Model};
use ferrolm_nn::{Ffn, ModelConfig, Norm, Position, Precision};

fn config(norm: Norm, ffn: Ffn) -> ModelConfig {
    ModelConfig {
        vocab_size: 23,
        context_length: 8,
        d_model: 8,
        n_layers: 3,
        n_heads: 2,
        d_ff: 12,
        rope_theta: 10000.0,
        norm,
        position: Position::Rope,
        ffn,
    }
}

#[test]
fn ready_ranges_are_final_in_order_and_change_nothing() {
    for norm in [Norm::Pre, Norm::Post, Norm::None] {
        for ffn in [Ffn::Swiglu, Ffn::Silu] {
            for precision in [Precision::F32, Precision::Bf16] {
                let c = config(norm, ffn);
                let (batch, seq) = (2, 5);
                let ids: Vec<u32> = (0..batch * seq).map(|i| (i * 7 % 23) as u32).collect();
                let targets: Vec<u32> = (0..batch * seq).map(|i| (i * 5 % 23) as u32).collect();
                let mut plain = Model::new(c.clone(), 3).unwrap();
                plain.precision = precision;
                let mut hooked = Model::new(c.clone(), 3).unwrap();
                hooked.precision = precision;
                let mut acts = Activations::new(&c, batch, seq);
                // Accumulating onto a non-zero gradient, as with micro-batches.
                for m in [&mut plain, &mut hooked] {
                    m.grads
                        .iter_mut()
                        .enumerate()
                        .for_each(|(i, g)| *g = i as f32 * 1e-3);
                }
                let l1 = plain.forward_backward(&mut acts, &ids, &targets).unwrap();
                let mut seen = Vec::new();
                let l2 = hooked
                    .forward_backward_with(&mut acts, &ids, &targets, &mut |r, g| seen.push((r, g.to_vec())))
                    .unwrap();
                let what = format!("{norm:?} {ffn:?} {precision:?}");
                assert_eq!(l1.to_bits(), l2.to_bits(), "{what}: loss");
                assert!(
                    plain.grads == hooked.grads,
                    "{what}: gradients differ with the hook"
                );
                let order = hooked.grad_ready_order();
                let ranges: Vec<_> = seen.iter().map(|(r, _)| r.clone()).collect();
                assert_eq!(ranges, order, "{what}");
                assert_eq!(order.len(), c.n_layers + 2);
                assert_eq!(order[0].end, c.num_params(), "{what}");
                assert_eq!(order.last().unwrap().start, 0, "{what}");
                assert!(
                    order.windows(2).all(|w| w[1].end == w[0].start),
                    "{what}: not contiguous"
                );
                for (r, g) in &seen {
                    assert!(
                        g[..] == hooked.grads[r.clone()],
                        "{what}: {r:?} changed after it was reported"
                    );
                }
            }
        }
    }
}
