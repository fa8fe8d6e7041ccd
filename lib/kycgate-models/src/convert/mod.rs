//! Format converters: model files whose upstream form the local provider cannot run directly are
//! turned into ONNX here, deterministically, so the output can be pinned by sha256 like any
//! downloaded file.

pub mod dlib;
pub mod minifasnet;
mod onnx;
pub mod pickle;

/// Converters a manifest `convert` source can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converter {
    /// dlib `.dat` ResNet -> ONNX ([`dlib`]).
    Dlib,
    /// MiniFASNet PyTorch checkpoint -> ONNX ([`minifasnet`]).
    MiniFasNet,
}

impl Converter {
    /// The converter a manifest names (`converter = "..."`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "dlib" => Some(Converter::Dlib),
            "minifasnet" => Some(Converter::MiniFasNet),
            _ => None,
        }
    }

    /// The manifest name.
    pub fn name(self) -> &'static str {
        match self {
            Converter::Dlib => "dlib",
            Converter::MiniFasNet => "minifasnet",
        }
    }

    /// Converts `input` (the `from` model's bytes) into ONNX model bytes.
    pub fn run(self, input: &[u8]) -> Result<Vec<u8>, ConvertError> {
        Ok(match self {
            Converter::Dlib => dlib::convert(input)?,
            Converter::MiniFasNet => minifasnet::convert(input)?,
        })
    }
}

/// Why a converter rejected its input.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Dlib(#[from] dlib::DlibError),
    #[error(transparent)]
    MiniFasNet(#[from] minifasnet::MiniFasNetError),
}
