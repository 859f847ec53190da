//! The fused ops against their composed references, in value and gradient; and the tensor
//! comparison the crate's other tests share.

use candle_core::{D, Device, Result, Tensor, Var};

use super::*;

/// The largest absolute difference between two tensors of one shape.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn close(a: &Tensor, b: &Tensor, tol: f32) {
    let diff = max_abs_diff(a, b);
    assert!(diff <= tol, "max difference {diff}");
}

/// Value and input gradient of `fused` against `reference` on the same random input and
/// upstream gradient.
fn check(
    fused: impl Fn(&Tensor) -> Result<Tensor>,
    reference: impl Fn(&Tensor) -> Result<Tensor>,
    shape: (usize, usize, usize),
    tol: f32,
) {
    let dev = Device::Cpu;
    let x =
        Var::from_tensor(&(Tensor::randn(0f32, 1.0, shape, &dev).unwrap() * 2.0).unwrap()).unwrap();
    let w = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
    let a = fused(x.as_tensor()).unwrap();
    let b = reference(x.as_tensor()).unwrap();
    close(&a, &b, tol);
    let ga = (a * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gb = (b * &w).unwrap().sum_all().unwrap().backward().unwrap();
    close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), tol * 10.0);
}

/// Values and all three gradients of a fused (x, a, c) op against its composed reference.
fn check3(
    fused: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    reference: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    a_shape: (usize, usize, usize),
    c_shape: (usize, usize, usize),
) {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 24), &dev).unwrap()).unwrap();
    let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, a_shape, &dev).unwrap()).unwrap();
    let c = Var::from_tensor(&Tensor::randn(0f32, 1.0, c_shape, &dev).unwrap()).unwrap();
    let w = Tensor::randn(0f32, 1.0, (2, 5, 24), &dev).unwrap();
    let f = fused(x.as_tensor(), a.as_tensor(), c.as_tensor()).unwrap();
    let r = reference(x.as_tensor(), a.as_tensor(), c.as_tensor()).unwrap();
    close(&f, &r, 1e-5);
    let gf = (f * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (r * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&x, &a, &c] {
        close(gf.get(v).unwrap(), gr.get(v).unwrap(), 1e-4);
    }
}

#[test]
fn fused_modulated_layer_norm_and_gated_residual_match_the_composed_ops() {
    let per_example = (2, 1, 24);
    let per_token = (2, 5, 24);
    check3(
        layer_norm_modulate,
        layer_norm_modulate_composed,
        per_example,
        per_example,
    );
    check3(
        layer_norm_modulate,
        layer_norm_modulate_composed,
        per_token,
        per_token,
    );
    check3(
        gated_residual,
        gated_residual_composed,
        per_token,
        per_example,
    );
    check3(
        gated_residual,
        gated_residual_composed,
        per_token,
        per_token,
    );
}

#[test]
fn fused_layer_norm_matches_the_composed_op() {
    check(layer_norm, layer_norm_composed, (3, 17, 64), 1e-5);
    check(layer_norm, layer_norm_composed, (1, 1, 7), 1e-5);
}

#[test]
fn fused_softmax_matches_candle_softmax() {
    check(
        softmax_last_dim,
        |x| candle_nn::ops::softmax(x, D::Minus1),
        (4, 9, 33),
        1e-6,
    );
    let masked = |f: fn(&Tensor) -> Result<Tensor>| {
        move |x: &Tensor| {
            let mask = Tensor::from_vec(vec![0f32, -1e9, 0.0], (1, 1, 3), x.device())?;
            f(&x.broadcast_add(&mask)?)
        }
    };
    check(
        masked(softmax_last_dim),
        masked(|x| candle_nn::ops::softmax(x, D::Minus1)),
        (2, 5, 3),
        1e-6,
    );
}

#[test]
fn fused_gelu_matches_candle_gelu() {
    check(gelu, |x| x.gelu(), (2, 13, 50), 2e-6);
}

#[test]
fn add_bias_matches_broadcast_add_in_value_and_gradient() {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (37, 19), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 19, &dev).unwrap()).unwrap();
    let w = Tensor::randn(0f32, 1.0, (37, 19), &dev).unwrap();
    let fused = add_bias(x.as_tensor(), b.as_tensor()).unwrap();
    let reference = x.as_tensor().broadcast_add(b.as_tensor()).unwrap();
    close(&fused, &reference, 1e-6);
    let g1 = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (reference * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    close(g1.get(&x).unwrap(), g2.get(&x).unwrap(), 1e-6);
    close(g1.get(&b).unwrap(), g2.get(&b).unwrap(), 1e-5);
}

#[test]
fn fused_attention_matches_the_composed_heads_in_value_and_gradient() {
    let dev = Device::Cpu;
    // 3 examples, 5 queries, 7 keys, width 24 in 4 heads; the second example has two keys masked
    // and the third every key (the gated reader's case: softmax over keys that are all masked).
    let (b, n, m, w, heads) = (3, 5, 7, 24, 4);
    let var =
        |t: usize| Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, w), &dev).unwrap()).unwrap();
    let (q, k, v) = (var(n), var(m), var(m));
    let mut mask = vec![0f32; b * m];
    mask[m + 2] = -1e9;
    mask[m + 5] = -1e9;
    mask[2 * m..].iter_mut().for_each(|x| *x = -1e9);
    let mask = Tensor::from_vec(mask, (b, 1, 1, m), &dev).unwrap();
    let upstream = Tensor::randn(0f32, 1.0, (b, n, w), &dev).unwrap();
    for mask in [None, Some(&mask)] {
        let fused = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), mask, heads).unwrap();
        let reference =
            attention_composed(q.as_tensor(), k.as_tensor(), v.as_tensor(), mask, heads).unwrap();
        close(&fused, &reference, 1e-5);
        let gf = (fused * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gr = (reference * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for x in [&q, &k, &v] {
            close(gf.get(x).unwrap(), gr.get(x).unwrap(), 1e-4);
        }
    }
}

#[test]
fn fused_attention_refuses_shapes_that_do_not_fit_and_is_zero_without_keys() {
    let dev = Device::Cpu;
    let q = Tensor::zeros((2, 5, 24), candle_core::DType::F32, &dev).unwrap();
    let k = Tensor::zeros((2, 7, 16), candle_core::DType::F32, &dev).unwrap();
    let err = attention(&q, &k, &k, None, 4).unwrap_err().to_string();
    assert!(err.contains("do not fit"), "{err}");
    let err = attention(&q, &q, &q, None, 5).unwrap_err().to_string();
    assert!(err.contains("heads"), "{err}");
    // No keys at all: nothing to attend to, a zero output rather than a panic.
    let none = Tensor::zeros((2, 0, 24), candle_core::DType::F32, &dev).unwrap();
    let out = attention(&q, &none, &none, None, 4).unwrap();
    assert_eq!(out.dims(), &[2, 5, 24]);
    assert_eq!(
        out.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
}

#[test]
fn fused_linear_matches_the_composed_layer_and_skips_frozen_gradients() {
    let dev = Device::Cpu;
    // 300 rows: above the threshold where the products use every thread.
    for rows in [3, 300] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, 24), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (40, 24), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 40, &dev).unwrap()).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (rows, 40), &dev).unwrap();
        let fused = linear(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
        let reference = linear_composed(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
        close(&fused, &reference, 1e-5);
        let gf = (fused * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gr = (&reference * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w, &b] {
            close(gf.get(v).unwrap(), gr.get(v).unwrap(), 1e-3);
        }
        // A frozen weight and bias (LoRA training) get no gradient; the input still does.
        let frozen = linear(
            x.as_tensor(),
            &w.as_tensor().detach(),
            &b.as_tensor().detach(),
        )
        .unwrap();
        let g = (frozen * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(g.get(&x).unwrap(), gr.get(&x).unwrap(), 1e-4);
        // The same frozen weight stored (in, out), as a frozen layer keeps it: the same values,
        // the same input and bias gradients, and a refusal to train the copy.
        let w_in_out = w.as_tensor().detach().t().unwrap().contiguous().unwrap();
        let stored = linear_in_out(x.as_tensor(), &w_in_out, b.as_tensor()).unwrap();
        close(&stored, &reference, 1e-5);
        let gs = (stored * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(gs.get(&x).unwrap(), gr.get(&x).unwrap(), 1e-3);
        close(gs.get(&b).unwrap(), gr.get(&b).unwrap(), 1e-3);
        let trained_copy = Var::from_tensor(&w_in_out).unwrap();
        let refused = linear_in_out(x.as_tensor(), trained_copy.as_tensor(), b.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward();
        assert!(refused.is_err(), "a trained (in, out) copy must be refused");
    }
}

#[test]
fn fast_exp_is_within_two_ulp_of_exp_and_zero_where_exp_leaves_the_normal_range() {
    let mut worst = 0f32;
    for i in -87_000..88_000 {
        for frac in [0.0f32, 0.123, 0.5, 0.777] {
            let x = (i as f32 + frac) / 1000.0;
            let (want, got) = (x.exp(), fast_exp(x));
            worst = worst.max(((got - want) / want).abs());
        }
    }
    assert!(worst <= 2.0 * f32::EPSILON, "worst relative error {worst}");
    for x in [-87.4f32, -100.0, -1e9, f32::NEG_INFINITY] {
        assert_eq!(fast_exp(x), 0.0, "{x}");
    }
    assert_eq!(fast_exp(0.0), 1.0);
}
