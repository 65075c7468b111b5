//! `--device` strings (`cpu`, `cuda`, `cuda:N`) to candle devices.

use anyhow::{bail, Context};
use candle_core::Device;

/// Opens the device named by `spec`. CUDA is only there when the crate was built with the
/// `cuda` feature; asking for it otherwise is an error that says so.
pub fn open(spec: &str) -> anyhow::Result<Device> {
    match parse(spec)? {
        None => Ok(Device::Cpu),
        Some(ordinal) => open_cuda(ordinal),
    }
}

/// `None` for the CPU, `Some(ordinal)` for a CUDA device.
fn parse(spec: &str) -> anyhow::Result<Option<usize>> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "cpu" => Ok(None),
        "cuda" | "gpu" => Ok(Some(0)),
        _ => {
            let Some(ordinal) = spec.strip_prefix("cuda:") else {
                bail!("unknown device `{spec}`: expected `cpu`, `cuda` or `cuda:N`");
            };
            let ordinal = ordinal
                .parse()
                .with_context(|| format!("device `{spec}`: `{ordinal}` is not a GPU index"))?;
            Ok(Some(ordinal))
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> anyhow::Result<Device> {
    Device::new_cuda(ordinal).with_context(|| format!("opening CUDA device {ordinal}"))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> anyhow::Result<Device> {
    bail!(
        "device `cuda:{ordinal}` requested, but this gpu-worker was built without CUDA support; \
         rebuild with `--features cuda` (needs the CUDA toolkit) or use `--device cpu`"
    )
}

/// The canonical name of a device, as announced by the worker.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_cuda_ordinals() {
        assert_eq!(parse("cpu").unwrap(), None);
        assert_eq!(parse("CUDA").unwrap(), Some(0));
        assert_eq!(parse("cuda:3").unwrap(), Some(3));
        assert!(parse("cuda:x").is_err());
        assert!(parse("tpu").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let err = open("cuda:0").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
