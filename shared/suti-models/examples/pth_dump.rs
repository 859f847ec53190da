//! Lists the tensors of a legacy `.pth` file: `cargo run -p suti-models --example pth_dump FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: pth_dump FILE");
    let bytes = std::fs::read(&path).expect("readable file");
    let tensors = suti_models::pth::read_legacy_state_dict(&bytes, &candle_core::Device::Cpu)
        .expect("a legacy state dict");
    let mut names: Vec<_> = tensors.keys().collect();
    names.sort();
    for name in names.iter().take(8) {
        let t = &tensors[*name];
        println!(
            "{name} {:?} {:?}",
            t.dims(),
            t.flatten_all().unwrap().get(0).map(|v| v.to_string()).ok()
        );
    }
    println!("{} tensors", tensors.len());
}
