//! The one device switch: where every stage, serving and job runs its models, from
//! `models.device`. Everything else takes the device from the models it was given.

use candle_core::Device;
use suti_runtime::ModelDevice;

use crate::{FactoryError, Result};

/// The device `models.device` names. Asking for CUDA from a binary built without the `cuda`
/// feature is a configuration error, not a silent fall-back to the CPU.
pub fn model_device(choice: ModelDevice) -> Result<Device> {
    match choice {
        ModelDevice::Cpu => Ok(Device::Cpu),
        ModelDevice::Cuda(_) if !candle_core::utils::cuda_is_available() => {
            Err(FactoryError::Invalid(format!(
                "models.device is {choice}, but this binary was built without CUDA \
                 (build suti with `--features cuda`, or set models.device: cpu)"
            )))
        }
        ModelDevice::Cuda(ordinal) => Device::new_cuda(ordinal).map_err(|e| {
            FactoryError::Invalid(format!("models.device is {choice}, which is unusable: {e}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_the_cpu() {
        assert!(model_device(ModelDevice::Cpu).unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_is_refused_clearly_without_the_feature() {
        for choice in ["cuda", "cuda:1"] {
            let err = model_device(choice.parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains("models.device is cuda:"), "{err}");
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
