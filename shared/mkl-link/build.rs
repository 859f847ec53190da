//! Links Intel MKL's LP64 interface, its GNU OpenMP threading layer and core, from
//! `SUTI_MKL_DIR` (default `~/.cache/suti/mkl/lib`, where `scripts/fetch-mkl` puts them).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SUTI_MKL_DIR");
    let dir = std::env::var_os("SUTI_MKL_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/suti/mkl/lib")))
        .expect("SUTI_MKL_DIR or HOME must be set to find Intel MKL");
    if !dir.join("libmkl_core.so").exists() {
        panic!(
            "Intel MKL is not in {} (run scripts/fetch-mkl, or set SUTI_MKL_DIR)",
            dir.display()
        );
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    for lib in ["mkl_intel_lp64", "mkl_gnu_thread", "mkl_core", "gomp"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
}
