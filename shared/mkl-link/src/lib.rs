//! Nothing to call: this crate exists for its build script, which links Intel MKL (from the
//! wheel `scripts/fetch-mkl` unpacked) into whatever enables candle's `mkl` feature.
