//! The estimate's work after its body (`estimate/mod.rs`) compiled to
//! wasm32 and run under node's V8, beside its native figure in `core.rs`:
//! how much of the edge estimate's time is this code in wasm.
//!
//! `cargo bench -p equilibrium-shared --target wasm32-unknown-unknown --bench wasm`
//! (natively this bench is empty).
#![cfg(target_arch = "wasm32")]

mod estimate;

use std::hint::black_box;

use wasm_bindgen_test::{wasm_bindgen_bench, Criterion};

#[wasm_bindgen_bench]
fn estimate_after_body(c: &mut Criterion) {
    let work = estimate::EstimateWork::new();
    c.bench_function("edge/estimate_after_body (wasm32)", |b| {
        b.iter(|| black_box(work.run(black_box(estimate::BODY))))
    });
    c.bench_function("edge/baseline_body_answer (wasm32)", |b| {
        b.iter(|| black_box(estimate::baseline(black_box(estimate::BODY))))
    });
}
