//! Links Intel MKL (`libmkl_rt`) from `SUTI_MKL_DIR` (default `~/.cache/suti/mkl/lib`, where
//! `scripts/fetch-mkl` puts it).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SUTI_MKL_DIR");
    let dir = std::env::var_os("SUTI_MKL_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/suti/mkl/lib")))
        .expect("SUTI_MKL_DIR or HOME must be set to find Intel MKL");
    if !dir.join("libmkl_rt.so").exists() {
        panic!(
            "Intel MKL is not in {} (run scripts/fetch-mkl, or set SUTI_MKL_DIR)",
            dir.display()
        );
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    // MKL's single dynamic library: it loads the interface, threading layer and kernels for this
    // CPU at run time (MKL_THREADING_LAYER=GNU picks GNU OpenMP, which gcc's libgomp provides).
    println!("cargo:rustc-link-lib=dylib=mkl_rt");
}
