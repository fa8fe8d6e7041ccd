//! Converts dlib's serialised face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) into a runnable ONNX graph.
//!
//! The `.dat` is dlib's own binary serialisation of `anet_type` (dlib's `dnn_face_recognition_ex`):
//! `loss_metric<fc_no_bias<128, avg_pool_everything<alevel0..alevel4<max_pool<relu<affine<con<32,7,7,2,2,
//! input_rgb_image_sized<150>>>>>>>>`. Nested layers serialise outermost first, each writing its
//! version and then its sub-network before its own parameters, so the stream is: the loss, every
//! layer's version (outer to inner), the input layer, then each computational layer's parameters
//! (inner to outer). Tag and skip layers write only a version. The network is fixed here (as it is
//! in dlib's C++ type) and the stream is checked against it layer by layer; any mismatch is an error.
//!
//! Encodings used (dlib `serialize.h`, `dnn/tensor.h`): integers are one header byte (low nibble =
//! byte count, 0x80 = negative) plus that many little-endian bytes; strings are a length then
//! bytes; bools are the ASCII bytes '1'/'0'; floats/doubles are an integer mantissa and an integer
//! exponent (value = mantissa * 2^exponent); tensors are `version, n, k, nr, nc` followed by
//! little-endian IEEE f32 (version 2) or dlib floats (version 1).
//!
//! The graph: input `input` f32 [1,3,150,150] RGB 0..255, output `embedding` f32 [1,128] (not
//! normalised; dlib's rule: euclidean distance < 0.6 = same person). Encoding is deterministic, so the
//! converter's output has one sha256 (recorded in `models.toml`).

use std::collections::HashMap;

use prost::Message as _;
use tract_onnx::pb;

use super::onnx::{int_attr, ints_attr, value_info, Graph};

/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "embedding";
/// Side of the square RGB face chip the network expects.
pub const CHIP_SIZE: usize = 150;
/// Embedding length.
pub const EMBEDDING_LEN: usize = 128;

/// Bumped whenever the produced bytes change (the manifest digest depends on them).
const CONVERTER_VERSION: &str = "kycgate-dlib2onnx/1";

/// Why a `.dat` could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum DlibError {
    /// The stream ended early.
    #[error("dlib model truncated at byte {0}")]
    Truncated(usize),
    /// An integer header byte is invalid or the value does not fit.
    #[error("dlib model: malformed integer at byte {0}")]
    BadInteger(usize),
    /// The stream does not match the expected network.
    #[error("dlib model at byte {at}: expected {expected}, found {found}")]
    Unexpected {
        at: usize,
        expected: String,
        found: String,
    },
    /// A layer's parameters have the wrong size or shape.
    #[error("dlib model layer {layer}: {problem}")]
    Shape { layer: usize, problem: String },
    /// Bytes remain after the network.
    #[error("dlib model has {0} trailing bytes")]
    Trailing(usize),
}

type Result<T> = std::result::Result<T, DlibError>;

// === stream reader ===

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// A serialised tensor: dims (n, k, nr, nc) and values.
struct Tensor {
    dims: [i64; 4],
    data: Vec<f32>,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or(DlibError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DlibError::Truncated(self.pos))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or(DlibError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    /// dlib's packed integer.
    fn int(&mut self) -> Result<i64> {
        let at = self.pos;
        let header = self.byte()?;
        let size = usize::from(header & 0x0f);
        if header & 0x70 != 0 || size == 0 || size > 8 {
            return Err(DlibError::BadInteger(at));
        }
        let mut value: u64 = 0;
        for (i, b) in self.bytes(size)?.iter().enumerate() {
            value |= u64::from(*b) << (8 * i);
        }
        let value = i64::try_from(value).map_err(|_| DlibError::BadInteger(at))?;
        Ok(if header & 0x80 != 0 { -value } else { value })
    }

    fn uint(&mut self) -> Result<usize> {
        let at = self.pos;
        usize::try_from(self.int()?).map_err(|_| DlibError::BadInteger(at))
    }

    fn expect_int(&mut self, expected: i64, what: &str) -> Result<()> {
        let at = self.pos;
        let found = self.int()?;
        if found == expected {
            Ok(())
        } else {
            Err(DlibError::Unexpected {
                at,
                expected: format!("{what} = {expected}"),
                found: found.to_string(),
            })
        }
    }

    fn string(&mut self) -> Result<String> {
        let len = self.uint()?;
        Ok(String::from_utf8_lossy(self.bytes(len)?).into_owned())
    }

    fn expect_str(&mut self, expected: &str) -> Result<()> {
        let at = self.pos;
        let found = self.string()?;
        if found == expected {
            Ok(())
        } else {
            Err(DlibError::Unexpected {
                at,
                expected: format!("\"{expected}\""),
                found: format!("\"{}\"", found.escape_default()),
            })
        }
    }

    fn bool(&mut self) -> Result<bool> {
        let at = self.pos;
        match self.byte()? {
            b'1' => Ok(true),
            b'0' => Ok(false),
            other => Err(DlibError::Unexpected {
                at,
                expected: "a bool ('0' or '1')".into(),
                found: format!("byte {other:#04x}"),
            }),
        }
    }

    /// dlib's portable float: mantissa and exponent, with reserved exponents for inf/nan.
    fn float(&mut self) -> Result<f64> {
        let mantissa = self.int()?;
        let exponent = self.int()?;
        Ok(match exponent {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            32002 => f64::NAN,
            e => (mantissa as f64) * 2f64.powi(e.clamp(-2000, 2000) as i32),
        })
    }

    fn tensor(&mut self) -> Result<Tensor> {
        let at = self.pos;
        let version = self.int()?;
        let mut dims = [0i64; 4];
        for d in &mut dims {
            *d = self.int()?;
        }
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .ok_or(DlibError::BadInteger(at))?;
        let data = match version {
            2 => {
                let raw = self.bytes(count.checked_mul(4).ok_or(DlibError::Truncated(at))?)?;
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            1 => (0..count)
                .map(|_| self.float().map(|v| v as f32))
                .collect::<Result<_>>()?,
            other => {
                return Err(DlibError::Unexpected {
                    at,
                    expected: "tensor version 1 or 2".into(),
                    found: other.to_string(),
                })
            }
        };
        Ok(Tensor { dims, data })
    }

    /// An `alias_tensor`: a view's shape (its offset is implied by the layer).
    fn alias_tensor(&mut self) -> Result<[i64; 4]> {
        self.expect_int(1, "alias_tensor version")?;
        let mut dims = [0i64; 4];
        for d in &mut dims {
            *d = self.int()?;
        }
        Ok(dims)
    }
}

// === the network dlib's C++ type describes ===

/// One layer of `anet_type`, innermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Con {
        filters: i64,
        size: i64,
        stride: i64,
    },
    Affine,
    Relu,
    MaxPool {
        size: i64,
        stride: i64,
    },
    AvgPool {
        size: i64,
        stride: i64,
    },
    /// `avg_pool_everything` (window 0x0 = whole input).
    AvgPoolEverything,
    AddPrev(u8),
    Tag(u8),
    Skip(u8),
    Fc {
        outputs: i64,
    },
}

impl Layer {
    /// Tags and skips carry no parameters and write only a version.
    fn is_computational(self) -> bool {
        !matches!(self, Layer::Tag(_) | Layer::Skip(_))
    }
}

/// `anet_type` expanded from its template aliases, input side first.
fn anet_layers() -> Vec<Layer> {
    use Layer::*;
    // block<N,BN,stride,S> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,S>>>>>
    let block = |l: &mut Vec<Layer>, n: i64, stride: i64| {
        l.extend([
            Con {
                filters: n,
                size: 3,
                stride,
            },
            Affine,
            Relu,
            Con {
                filters: n,
                size: 3,
                stride: 1,
            },
            Affine,
        ])
    };
    // ares<N,S> = relu<add_prev1<block<N,affine,1,tag1<S>>>>
    let ares = |l: &mut Vec<Layer>, n: i64| {
        l.push(Tag(1));
        block(l, n, 1);
        l.extend([AddPrev(1), Relu]);
    };
    // ares_down<N,S> = relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<S>>>>>>>
    let ares_down = |l: &mut Vec<Layer>, n: i64| {
        l.push(Tag(1));
        block(l, n, 2);
        l.extend([
            Tag(2),
            Skip(1),
            AvgPool { size: 2, stride: 2 },
            AddPrev(2),
            Relu,
        ]);
    };
    let mut l = vec![
        Con {
            filters: 32,
            size: 7,
            stride: 2,
        },
        Affine,
        Relu,
        MaxPool { size: 3, stride: 2 },
    ];
    // alevel4 = ares<32,ares<32,ares<32,S>>>
    (0..3).for_each(|_| ares(&mut l, 32));
    // alevel3 = ares<64,ares<64,ares<64,ares_down<64,S>>>>
    ares_down(&mut l, 64);
    (0..3).for_each(|_| ares(&mut l, 64));
    // alevel2 = ares<128,ares<128,ares_down<128,S>>>
    ares_down(&mut l, 128);
    (0..2).for_each(|_| ares(&mut l, 128));
    // alevel1 = ares<256,ares<256,ares_down<256,S>>>
    ares_down(&mut l, 256);
    (0..2).for_each(|_| ares(&mut l, 256));
    // alevel0 = ares_down<256,S>
    ares_down(&mut l, 256);
    l.extend([
        AvgPoolEverything,
        Fc {
            outputs: EMBEDDING_LEN as i64,
        },
    ]);
    l
}

// === parsed parameters ===

enum Params {
    Con {
        weights: Vec<f32>,
        bias: Vec<f32>,
        dims: [i64; 4],
        stride: [i64; 2],
        pad: [i64; 2],
    },
    Affine {
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
    Pool {
        size: [i64; 2],
        stride: [i64; 2],
        pad: [i64; 2],
    },
    Fc {
        weights: Vec<f32>,
        inputs: i64,
        outputs: i64,
    },
    None,
}

struct InputLayer {
    mean: [f32; 3],
}

fn shape_err(layer: usize, problem: impl Into<String>) -> DlibError {
    DlibError::Shape {
        layer,
        problem: problem.into(),
    }
}

fn read_pool(
    r: &mut Reader,
    name: &str,
    idx: usize,
    expected: Option<(i64, i64)>,
) -> Result<Params> {
    r.expect_str(name)?;
    let (nr, nc, sy, sx, py, px) = (r.int()?, r.int()?, r.int()?, r.int()?, r.int()?, r.int()?);
    let ok = match expected {
        Some((size, stride)) => nr == size && nc == size && sy == stride && sx == stride,
        None => nr == 0 && nc == 0,
    };
    if !ok || py < 0 || px < 0 {
        return Err(shape_err(
            idx,
            format!("{name} window {nr}x{nc} stride {sy}x{sx} pad {py}x{px} unexpected"),
        ));
    }
    Ok(Params::Pool {
        size: [nr, nc],
        stride: [sy, sx],
        pad: [py, px],
    })
}

/// Four learning-rate / weight-decay multipliers: training state, read and dropped.
fn skip_multipliers(r: &mut Reader) -> Result<()> {
    for _ in 0..4 {
        r.float()?;
    }
    Ok(())
}

fn read_details(r: &mut Reader, layer: Layer, idx: usize) -> Result<Params> {
    Ok(match layer {
        Layer::Con {
            filters,
            size,
            stride,
        } => {
            r.expect_str("con_4")?;
            let params = r.tensor()?;
            let (nf, nr, nc) = (r.int()?, r.int()?, r.int()?);
            let (sy, sx, py, px) = (r.int()?, r.int()?, r.int()?, r.int()?);
            let fdims = r.alias_tensor()?;
            let bdims = r.alias_tensor()?;
            skip_multipliers(r)?;
            if nf != filters
                || nr != size
                || nc != size
                || sy != stride
                || sx != stride
                || py < 0
                || px < 0
            {
                return Err(shape_err(
                    idx,
                    format!("con {nf} filters {nr}x{nc} stride {sy}x{sx}, expected {filters} filters {size}x{size} stride {stride}"),
                ));
            }
            let wlen = usize::try_from(fdims.iter().product::<i64>())
                .map_err(|_| shape_err(idx, "bad filter dims"))?;
            if fdims[0] != nf || fdims[2] != nr || fdims[3] != nc || bdims != [1, nf, 1, 1] {
                return Err(shape_err(
                    idx,
                    format!("con filter dims {fdims:?} bias dims {bdims:?}"),
                ));
            }
            if params.data.len() != wlen + nf as usize {
                return Err(shape_err(
                    idx,
                    format!(
                        "con has {} parameters, expected {}",
                        params.data.len(),
                        wlen + nf as usize
                    ),
                ));
            }
            let mut weights = params.data;
            let bias = weights.split_off(wlen);
            Params::Con {
                weights,
                bias,
                dims: fdims,
                stride: [sy, sx],
                pad: [py, px],
            }
        }
        Layer::Affine => {
            r.expect_str("affine_")?;
            let params = r.tensor()?;
            let g = r.alias_tensor()?;
            let b = r.alias_tensor()?;
            let at = r.pos;
            let mode = r.int()?;
            if mode != 0 {
                // 0 = CONV_MODE (one gamma/beta per channel); FC_MODE would be per element.
                return Err(DlibError::Unexpected {
                    at,
                    expected: "affine CONV_MODE (0)".into(),
                    found: mode.to_string(),
                });
            }
            let c = g[1];
            if g != [1, c, 1, 1] || b != g || params.data.len() != 2 * c as usize {
                return Err(shape_err(
                    idx,
                    format!(
                        "affine gamma {g:?} beta {b:?} with {} parameters",
                        params.data.len()
                    ),
                ));
            }
            let mut gamma = params.data;
            let beta = gamma.split_off(c as usize);
            Params::Affine { gamma, beta }
        }
        Layer::Relu => {
            r.expect_str("relu_")?;
            Params::None
        }
        Layer::MaxPool { size, stride } => read_pool(r, "max_pool_2", idx, Some((size, stride)))?,
        Layer::AvgPool { size, stride } => read_pool(r, "avg_pool_2", idx, Some((size, stride)))?,
        Layer::AvgPoolEverything => read_pool(r, "avg_pool_2", idx, None)?,
        Layer::AddPrev(_) => {
            r.expect_str("add_prev_")?;
            Params::None
        }
        Layer::Fc { outputs } => {
            r.expect_str("fc_2")?;
            let (n_out, n_in) = (r.int()?, r.int()?);
            let params = r.tensor()?;
            let w = r.alias_tensor()?;
            let b = r.alias_tensor()?;
            let at = r.pos;
            let bias_mode = r.int()?;
            skip_multipliers(r)?;
            if bias_mode != 1 {
                // 1 = FC_NO_BIAS: anet_type uses fc_no_bias.
                return Err(DlibError::Unexpected {
                    at,
                    expected: "fc bias mode FC_NO_BIAS (1)".into(),
                    found: bias_mode.to_string(),
                });
            }
            if n_out != outputs
                || w != [n_in, n_out, 1, 1]
                || b != [0, 0, 0, 0]
                || params.dims != [n_in, n_out, 1, 1]
            {
                return Err(shape_err(
                    idx,
                    format!(
                        "fc {n_in}->{n_out}, weights {w:?}, params {:?}",
                        params.dims
                    ),
                ));
            }
            Params::Fc {
                weights: params.data,
                inputs: n_in,
                outputs: n_out,
            }
        }
        Layer::Tag(_) | Layer::Skip(_) => Params::None,
    })
}

/// The per-layer state dlib appends after a layer's parameters (setup flags, gradient buffers).
fn skip_layer_trailer(r: &mut Reader, version: i64, innermost: bool) -> Result<()> {
    for _ in 0..3 {
        r.bool()?;
    }
    r.tensor()?; // x_grad
    r.tensor()?; // cached_output
    if innermost {
        r.tensor()?; // grad_final
        if version >= 3 {
            r.uint()?; // sample expansion factor
        }
    } else if version >= 2 {
        r.tensor()?; // params_grad
    }
    Ok(())
}

fn parse(dat: &[u8]) -> Result<(InputLayer, Vec<(Layer, Params)>)> {
    let mut r = Reader { data: dat, pos: 0 };
    r.expect_int(1, "add_loss_layer version")?;
    r.expect_str("loss_metric_2")?;
    r.float()?; // margin
    r.float()?; // distance threshold
    let layers = anet_layers();
    // Versions, outermost first.
    let mut versions = vec![0i64; layers.len()];
    for (idx, layer) in layers.iter().enumerate().rev() {
        let at = r.pos;
        let v = r.int()?;
        let ok = match (idx, layer.is_computational()) {
            (0, _) => v == 2 || v == 3,
            (_, true) => v == 1 || v == 2,
            (_, false) => v == 1,
        };
        if !ok {
            return Err(DlibError::Unexpected {
                at,
                expected: format!("version of layer {idx} ({layer:?})"),
                found: v.to_string(),
            });
        }
        versions[idx] = v;
    }
    r.expect_str("input_rgb_image_sized")?;
    let mean = [r.float()? as f32, r.float()? as f32, r.float()? as f32];
    r.expect_int(CHIP_SIZE as i64, "input rows")?;
    r.expect_int(CHIP_SIZE as i64, "input columns")?;
    let mut parsed = Vec::with_capacity(layers.len());
    for (idx, layer) in layers.into_iter().enumerate() {
        let params = read_details(&mut r, layer, idx)?;
        if layer.is_computational() {
            skip_layer_trailer(&mut r, versions[idx], idx == 0)?;
        }
        parsed.push((layer, params));
    }
    if r.pos != dat.len() {
        return Err(DlibError::Trailing(dat.len() - r.pos));
    }
    Ok((InputLayer { mean }, parsed))
}

// === ONNX graph ===

/// A value in the graph and its static [C, H, W] shape (batch is 1).
#[derive(Clone)]
struct Value {
    name: String,
    shape: [i64; 3],
}

fn pooled(len: i64, window: i64, stride: i64, pad: i64) -> i64 {
    1 + (len + 2 * pad - window) / stride
}

/// Zero-pads `v` at the end of each axis up to `shape`: dlib's `add_prev` adds tensors of
/// different sizes by treating the missing part of the smaller one as zeros.
fn pad_to(g: &mut Graph, v: Value, shape: [i64; 3]) -> Value {
    if v.shape == shape {
        return v;
    }
    let ends = [
        shape[0] - v.shape[0],
        shape[1] - v.shape[1],
        shape[2] - v.shape[2],
    ];
    let pads = g.init_i64(&[0, 0, 0, 0, 0, ends[0], ends[1], ends[2]]);
    let name = g.node("Pad", vec![v.name, pads], vec![], None);
    Value { name, shape }
}

/// `input_rgb_image_sized::to_tensor`: (pixel - mean) / 256, planes R, G, B.
fn input_stage(g: &mut Graph, input: &InputLayer) -> Value {
    let size = CHIP_SIZE as i64;
    let mean = g.init_f32(vec![1, 3, 1, 1], &input.mean);
    let centred = g.node("Sub", vec![INPUT_NAME.into(), mean], vec![], None);
    let scale = g.init_f32(vec![1, 1, 1, 1], &[1.0 / 256.0]);
    let scaled = g.node("Mul", vec![centred, scale], vec![], None);
    Value {
        name: scaled,
        shape: [3, size, size],
    }
}

/// dlib `con`: convolution with bias, symmetric padding.
fn con(
    g: &mut Graph,
    idx: usize,
    x: Value,
    (weights, bias, dims, stride, pad): (&[f32], &[f32], [i64; 4], [i64; 2], [i64; 2]),
) -> Result<Value> {
    if dims[1] != x.shape[0] {
        return Err(shape_err(
            idx,
            format!("con expects {} input channels, has {}", dims[1], x.shape[0]),
        ));
    }
    let w = g.init_f32(dims.to_vec(), weights);
    let b = g.init_f32(vec![dims[0]], bias);
    let attrs = vec![
        ints_attr("kernel_shape", vec![dims[2], dims[3]]),
        ints_attr("pads", vec![pad[0], pad[1], pad[0], pad[1]]),
        ints_attr("strides", stride.to_vec()),
    ];
    let name = g.node("Conv", vec![x.name, w, b], attrs, None);
    Ok(Value {
        name,
        shape: [
            dims[0],
            pooled(x.shape[1], dims[2], stride[0], pad[0]),
            pooled(x.shape[2], dims[3], stride[1], pad[1]),
        ],
    })
}

/// dlib `affine` (batch norm frozen into a per-channel scale and shift).
fn affine(g: &mut Graph, idx: usize, x: Value, gamma: &[f32], beta: &[f32]) -> Result<Value> {
    let c = gamma.len() as i64;
    if c != x.shape[0] {
        return Err(shape_err(
            idx,
            format!("affine has {c} channels, input {}", x.shape[0]),
        ));
    }
    let gm = g.init_f32(vec![1, c, 1, 1], gamma);
    let bt = g.init_f32(vec![1, c, 1, 1], beta);
    let m = g.node("Mul", vec![x.name, gm], vec![], None);
    let name = g.node("Add", vec![m, bt], vec![], None);
    Ok(Value {
        name,
        shape: x.shape,
    })
}

/// dlib `max_pool` / `avg_pool` with an explicit window.
fn pool(g: &mut Graph, op: &str, x: Value, size: [i64; 2], stride: [i64; 2], pad: [i64; 2]) -> Value {
    let mut attrs = vec![
        ints_attr("kernel_shape", size.to_vec()),
        ints_attr("strides", stride.to_vec()),
    ];
    if pad != [0, 0] {
        // dlib averages over in-bounds elements only: ONNX's count_include_pad = 0.
        attrs.push(ints_attr("pads", vec![pad[0], pad[1], pad[0], pad[1]]));
    }
    let name = g.node(op, vec![x.name], attrs, None);
    Value {
        name,
        shape: [
            x.shape[0],
            pooled(x.shape[1], size[0], stride[0], pad[0]),
            pooled(x.shape[2], size[1], stride[1], pad[1]),
        ],
    }
}

/// dlib `add_prev<tag>`: sum with the tagged value, zero-padding the smaller one.
fn add_prev(g: &mut Graph, x: Value, other: Value) -> Value {
    let shape = [
        x.shape[0].max(other.shape[0]),
        x.shape[1].max(other.shape[1]),
        x.shape[2].max(other.shape[2]),
    ];
    let a = pad_to(g, x, shape);
    let b = pad_to(g, other, shape);
    let name = g.node("Add", vec![a.name, b.name], vec![], None);
    Value { name, shape }
}

/// dlib's `fc_no_bias`: output = flatten(input) (k, r, c order) x W, W is [inputs, outputs]; its
/// output is the graph output.
fn fc(g: &mut Graph, idx: usize, x: Value, weights: &[f32], inputs: i64, outputs: i64) -> Result<Value> {
    let flat_len = x.shape.iter().product::<i64>();
    if flat_len != inputs {
        return Err(shape_err(
            idx,
            format!("fc expects {inputs} inputs, has {flat_len}"),
        ));
    }
    let flat = g.node("Flatten", vec![x.name], vec![int_attr("axis", 1)], None);
    let w = g.init_f32(vec![inputs, outputs], weights);
    let name = g.node("MatMul", vec![flat, w], vec![], Some(OUTPUT_NAME));
    Ok(Value {
        name,
        shape: [outputs, 1, 1],
    })
}

/// Looks a tag up for `skip` / `add_prev`.
fn tagged(tags: &HashMap<u8, Value>, idx: usize, t: u8, what: &str) -> Result<Value> {
    tags.get(&t)
        .cloned()
        .ok_or_else(|| shape_err(idx, format!("{what}{t} before tag{t}")))
}

/// One layer applied to `x`.
fn layer_step(
    g: &mut Graph,
    tags: &mut HashMap<u8, Value>,
    idx: usize,
    x: Value,
    layer: Layer,
    params: &Params,
) -> Result<Value> {
    Ok(match (layer, params) {
        (
            Layer::Con { .. },
            Params::Con {
                weights,
                bias,
                dims,
                stride,
                pad,
            },
        ) => con(g, idx, x, (weights, bias, *dims, *stride, *pad))?,
        (Layer::Affine, Params::Affine { gamma, beta }) => affine(g, idx, x, gamma, beta)?,
        (Layer::Relu, _) => {
            let name = g.node("Relu", vec![x.name], vec![], None);
            Value {
                name,
                shape: x.shape,
            }
        }
        (Layer::MaxPool { .. }, Params::Pool { size, stride, pad }) => {
            pool(g, "MaxPool", x, *size, *stride, *pad)
        }
        (Layer::AvgPool { .. }, Params::Pool { size, stride, pad }) => {
            pool(g, "AveragePool", x, *size, *stride, *pad)
        }
        (Layer::AvgPoolEverything, _) => {
            let name = g.node("GlobalAveragePool", vec![x.name], vec![], None);
            Value {
                name,
                shape: [x.shape[0], 1, 1],
            }
        }
        (Layer::Tag(t), _) => {
            tags.insert(t, x.clone());
            x
        }
        (Layer::Skip(t), _) => tagged(tags, idx, t, "skip")?,
        (Layer::AddPrev(t), _) => {
            let other = tagged(tags, idx, t, "add_prev")?;
            add_prev(g, x, other)
        }
        (
            Layer::Fc { .. },
            Params::Fc {
                weights,
                inputs,
                outputs,
            },
        ) => fc(g, idx, x, weights, *inputs, *outputs)?,
        (layer, _) => return Err(shape_err(idx, format!("parameters do not match {layer:?}"))),
    })
}

/// The whole network: input stage, every layer in order, then the model wrapper.
fn build(input: InputLayer, layers: Vec<(Layer, Params)>) -> Result<pb::ModelProto> {
    let mut g = Graph::default();
    let mut x = input_stage(&mut g, &input);
    let mut tags: HashMap<u8, Value> = HashMap::new();
    for (idx, (layer, params)) in layers.iter().enumerate() {
        x = layer_step(&mut g, &mut tags, idx, x, *layer, params)?;
    }
    if x.name != OUTPUT_NAME {
        return Err(shape_err(0, "network does not end in the fc layer"));
    }
    let size = CHIP_SIZE as i64;
    Ok(g.into_model(
        "dlib_face_recognition_resnet_model_v1",
        "dlib face recognition ResNet v1 (Davis King, public domain), converted from its .dat. \
         Input: RGB 0..255 150x150 dlib face chip. Output: 128-d embedding, same person if \
         euclidean distance < 0.6.",
        CONVERTER_VERSION,
        value_info(INPUT_NAME, &[1, 3, size, size]),
        value_info(OUTPUT_NAME, &[1, x.shape[0]]),
    ))
}

/// Converts the bytes of `dlib_face_recognition_resnet_model_v1.dat` into ONNX model bytes.
/// Deterministic: the same input always gives the same bytes.
pub fn convert(dat: &[u8]) -> std::result::Result<Vec<u8>, DlibError> {
    let (input, layers) = parse(dat)?;
    Ok(build(input, layers)?.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_integers_round_trip_dlib_encoding() {
        // Bytes as dlib writes them: header (count | 0x80 if negative) then little-endian bytes.
        let data = [
            0x01, 0x00, 0x01, 0x96, 0x02, 0x80, 0x12, 0x81, 0x1c, 0x03, 0x0a, 0xd7, 0xa3, 0x81,
            0x1c,
        ];
        let mut r = Reader {
            data: &data,
            pos: 0,
        };
        assert_eq!(r.int().ok(), Some(0));
        assert_eq!(r.int().ok(), Some(150));
        assert_eq!(r.int().ok(), Some(4736));
        assert_eq!(r.int().ok(), Some(-28));
        // 0xa3d70a * 2^-28: the loss margin 0.04 as stored in the model.
        let v = r.float().unwrap_or(f64::NAN);
        assert!((v - 0.04).abs() < 1e-9, "{v}");
        assert!(matches!(r.int(), Err(DlibError::Truncated(_))));
    }

    #[test]
    fn bad_header_and_truncation_are_errors() {
        assert!(matches!(convert(&[]), Err(DlibError::Truncated(0))));
        assert!(matches!(convert(&[0x31]), Err(DlibError::BadInteger(0))));
        let mut wrong_loss = vec![0x01, 0x01, 0x01, 0x04];
        wrong_loss.extend_from_slice(b"fc_2");
        assert!(matches!(
            convert(&wrong_loss),
            Err(DlibError::Unexpected { .. })
        ));
    }

    #[test]
    fn architecture_has_dlib_layer_counts() {
        let l = anet_layers();
        let count = |f: fn(&Layer) -> bool| l.iter().filter(|x| f(x)).count();
        assert_eq!(count(|x| matches!(x, Layer::Con { .. })), 29);
        assert_eq!(count(|x| matches!(x, Layer::Affine)), 29);
        assert_eq!(count(|x| matches!(x, Layer::AddPrev(_))), 14);
        assert_eq!(count(|x| matches!(x, Layer::AvgPool { .. })), 4);
    }
}
