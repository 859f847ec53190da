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
