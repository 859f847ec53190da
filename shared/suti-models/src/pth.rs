//! Reading PyTorch's legacy (pre-1.6, non-zip) `torch.save` format, in which the pretrained image
//! tower is shipped. candle reads only the zip format. The legacy file is five pickles — magic
//! number, protocol version, system info, the object (here a state dict whose tensors point at
//! storages by key), the list of storage keys — followed by each storage's raw bytes, prefixed by
//! its element count, in the order of that list.

use std::collections::HashMap;
use std::io::{BufRead, Cursor, Read};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Result, Tensor};

/// The first pickle of a legacy `torch.save` file: protocol 2, then the 10-byte magic number
/// 0x1950a86a20f9469cfc6c as a LONG1, then STOP. Checked byte for byte (candle's LONG1 decoding
/// handles at most 8 bytes).
const LEGACY_MAGIC_PICKLE: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

fn read_pickle<R: BufRead>(reader: &mut R) -> Result<Object> {
    let mut stack = Stack::empty();
    stack.read_loop(reader)?;
    stack.finalize()
}

/// Reads every tensor of a legacy `.pth` state dict (f32 and i64 storages; contiguous tensors).
pub fn read_legacy_state_dict(bytes: &[u8], device: &Device) -> Result<HashMap<String, Tensor>> {
    if !bytes.starts_with(&LEGACY_MAGIC_PICKLE) {
        candle_core::bail!("not a legacy torch.save file (no magic number)");
    }
    let mut reader = Cursor::new(&bytes[LEGACY_MAGIC_PICKLE.len()..]);
    let _protocol = read_pickle(&mut reader)?;
    let _sys_info = read_pickle(&mut reader)?;
    let state = read_pickle(&mut reader)?;
    let keys = match read_pickle(&mut reader)? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|o| candle_core::Error::Msg(format!("storage key {o:?}")))
            })
            .collect::<Result<Vec<String>>>()?,
        other => candle_core::bail!("expected the storage key list, found {other:?}"),
    };
    let Object::Dict(entries) = state else {
        candle_core::bail!("the saved object is not a state dict");
    };
    let dir = std::path::Path::new("legacy");
    let mut infos = Vec::new();
    for (name, value) in entries {
        if let Some(info) = value.into_tensor_info(name, dir)? {
            infos.push(info);
        }
    }
    // Storages follow in key order: an element count, then the raw little-endian values.
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let elem_size: HashMap<String, usize> = infos
        .iter()
        .map(|i| (storage_key(&i.path), i.dtype.size_in_bytes()))
        .collect();
    for key in keys {
        let mut count = [0u8; 8];
        reader
            .read_exact(&mut count)
            .map_err(candle_core::Error::wrap)?;
        let count = u64::from_le_bytes(count) as usize;
        let size = *elem_size.get(&key).unwrap_or(&4);
        let mut data = vec![0u8; count * size];
        reader
            .read_exact(&mut data)
            .map_err(candle_core::Error::wrap)?;
        storages.insert(key, data);
    }
    let mut tensors = HashMap::new();
    for info in infos {
        let key = storage_key(&info.path);
        let data = storages
            .get(&key)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing storage {key}")))?;
        let dims = info.layout.shape().dims().to_vec();
        let size = info.dtype.size_in_bytes();
        // Element offsets of the tensor in its storage, in row-major order: the layout may be
        // strided (a transposed weight saved as such).
        let offsets = strided_offsets(
            &dims,
            info.layout.stride(),
            info.layout.start_offset() / size,
        );
        if offsets.iter().any(|&o| (o + 1) * size > data.len()) {
            candle_core::bail!("{}: storage too short", info.name);
        }
        let tensor = match info.dtype {
            DType::F32 => {
                let values: Vec<f32> = offsets
                    .iter()
                    .map(|&o| {
                        f32::from_le_bytes(data[o * 4..o * 4 + 4].try_into().expect("4 bytes"))
                    })
                    .collect();
                Tensor::from_vec(values, dims, device)?
            }
            DType::I64 => {
                let values: Vec<i64> = offsets
                    .iter()
                    .map(|&o| {
                        i64::from_le_bytes(data[o * 8..o * 8 + 8].try_into().expect("8 bytes"))
                    })
                    .collect();
                Tensor::from_vec(values, dims, device)?
            }
            other => candle_core::bail!("{}: unsupported dtype {other:?}", info.name),
        };
        tensors.insert(info.name, tensor);
    }
    Ok(tensors)
}

/// Storage offsets of every element of a tensor with `dims` and `strides`, in row-major order.
fn strided_offsets(dims: &[usize], strides: &[usize], start: usize) -> Vec<usize> {
    let numel: usize = dims.iter().product();
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; dims.len()];
    for _ in 0..numel {
        out.push(start + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>());
        for axis in (0..dims.len()).rev() {
            index[axis] += 1;
            if index[axis] < dims[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// The storage key at the end of candle's tensor-info path (`legacy/data/<key>`).
fn storage_key(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}
