//! Converts MiniFASNet passive-liveness checkpoints (minivision-ai Silent-Face-Anti-Spoofing,
//! Apache-2.0: `2.7_80x80_MiniFASNetV2.pth`, `4_0_0_80x80_MiniFASNetV1SE.pth`) into the ONNX graph
//! the local provider runs.
//!
//! The checkpoints are legacy `torch.save` pickles of a `DataParallel` state_dict (`module.`
//! prefixes), read by [`super::pickle`]. The network is upstream's `MiniFASNet` / `MiniFASNetSE`:
//! `conv1` (3x3/2), `conv2_dw` (3x3 depthwise), then `Depth_Wise` stages `conv_23`, `conv_34`,
//! `conv_45` (stride 2) each followed by a residual stage `conv_3`, `conv_4`, `conv_5` (stride 1;
//! in the SE variant the last block of each stage ends in a squeeze-excitation module), then
//! `conv_6_sep` (1x1), `conv_6_dw` (5x5 depthwise, no activation), flatten, `linear` (no bias),
//! `bn` (BatchNorm1d) and `prob` (no bias). Channel counts and groups come from the weight shapes
//! (the released models are channel-pruned), strides and paddings from upstream's code. Batch
//! norms are frozen into a per-channel multiply and add, computed in f64. Every tensor of the
//! checkpoint must be used (except BatchNorm's `num_batches_tracked` counters), so a checkpoint of
//! another shape is refused rather than half-converted.
//!
//! The graph: input `input` f32 [1,3,80,80] BGR 0..255, output `logits` f32 [1,3] (softmax
//! class 1 = real), as in the shared mirror. Encoding is deterministic: one sha256 per checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;
use tract_onnx::pb;

use super::onnx::{int_attr, ints_attr, value_info, Graph};
use super::pickle::{read_state_dict, PickleError, Tensor};

/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "logits";
/// Side of the square BGR crop the network expects.
pub const INPUT_SIZE: usize = 80;
/// Number of classes (0 = print, 1 = real, 2 = replay).
pub const CLASSES: usize = 3;

/// Bumped whenever the produced bytes change (the manifest digests depend on them).
const CONVERTER_VERSION: &str = "kycgate-minifasnet2onnx/1";
/// PyTorch's BatchNorm default epsilon, used by upstream.
const BN_EPS: f64 = 1e-5;
/// `DataParallel` prefix on every key of the released checkpoints.
const PREFIX: &str = "module.";

/// Why a checkpoint could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum MiniFasNetError {
    /// The file is not a readable legacy state_dict.
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// A tensor the network needs is absent.
    #[error("MiniFASNet checkpoint has no tensor `{0}`")]
    Missing(String),
    /// A tensor has the wrong shape for its place in the network.
    #[error("MiniFASNet tensor `{tensor}`: {problem}")]
    Shape { tensor: String, problem: String },
    /// The checkpoint holds tensors this network does not use (a different architecture).
    #[error("MiniFASNet checkpoint has tensors the network does not use: {0}")]
    Unused(String),
}

type Result<T> = std::result::Result<T, MiniFasNetError>;

fn shape_err(tensor: &str, problem: impl Into<String>) -> MiniFasNetError {
    MiniFasNetError::Shape {
        tensor: tensor.into(),
        problem: problem.into(),
    }
}

/// The checkpoint's tensors by name (prefix removed), with a record of which were used.
struct Weights {
    tensors: BTreeMap<String, Tensor>,
    used: BTreeSet<String>,
}

impl Weights {
    fn take(&mut self, name: &str) -> Result<&Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| MiniFasNetError::Missing(name.into()))?;
        self.used.insert(name.into());
        Ok(t)
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A 1-d tensor of length `len`.
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.take(name)?;
        if t.shape != [len] {
            return Err(shape_err(name, format!("shape {:?}, expected [{len}]", t.shape)));
        }
        Ok(t.data.clone())
    }

    /// Everything not used, except BatchNorm's step counters.
    fn unused(&self) -> Vec<&str> {
        self.tensors
            .keys()
            .filter(|k| !self.used.contains(*k) && !k.ends_with(".num_batches_tracked"))
            .map(String::as_str)
            .collect()
    }
}

/// A value in the graph and its static [C, H, W] shape (batch is 1).
#[derive(Clone)]
struct Value {
    name: String,
    shape: [i64; 3],
}

/// Builds the graph while reading the weights.
struct Builder {
    g: Graph,
    w: Weights,
}

impl Builder {
    /// `Conv2d(bias=False)` from `<prefix>.weight`; groups follow from the weight's input width.
    fn conv(&mut self, prefix: &str, x: Value, stride: i64, pad: i64) -> Result<Value> {
        let name = format!("{prefix}.weight");
        let t = self.w.take(&name)?;
        let [out_c, in_per_group, kh, kw] = t.shape[..] else {
            return Err(shape_err(&name, format!("rank {} is not 4", t.shape.len())));
        };
        let in_c = x.shape[0] as usize;
        if in_per_group == 0 || in_c % in_per_group != 0 || out_c % (in_c / in_per_group) != 0 {
            return Err(shape_err(
                &name,
                format!("{:?} does not fit {in_c} input channels", t.shape),
            ));
        }
        let groups = (in_c / in_per_group) as i64;
        let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        let data = t.data.clone();
        let weight = self.g.init_f32(dims, &data);
        let attrs = vec![
            int_attr("group", groups),
            ints_attr("kernel_shape", vec![kh as i64, kw as i64]),
            ints_attr("pads", vec![pad, pad, pad, pad]),
            ints_attr("strides", vec![stride, stride]),
        ];
        let out = self.g.node("Conv", vec![x.name, weight], attrs, None);
        let side = |len: i64, k: usize| 1 + (len + 2 * pad - k as i64) / stride;
        Ok(Value {
            name: out,
            shape: [out_c as i64, side(x.shape[1], kh), side(x.shape[2], kw)],
        })
    }

    /// Inference-mode BatchNorm as `x * scale + shift` with broadcast shape `dims`.
    fn batch_norm(&mut self, prefix: &str, x: String, channels: usize, dims: Vec<i64>) -> Result<String> {
        let gamma = self.w.vector(&format!("{prefix}.weight"), channels)?;
        let beta = self.w.vector(&format!("{prefix}.bias"), channels)?;
        let mean = self.w.vector(&format!("{prefix}.running_mean"), channels)?;
        let var = self.w.vector(&format!("{prefix}.running_var"), channels)?;
        let mut scale = Vec::with_capacity(channels);
        let mut shift = Vec::with_capacity(channels);
        for c in 0..channels {
            let s = f64::from(gamma[c]) / (f64::from(var[c]) + BN_EPS).sqrt();
            scale.push(s as f32);
            shift.push((f64::from(beta[c]) - f64::from(mean[c]) * s) as f32);
        }
        let scale = self.g.init_f32(dims.clone(), &scale);
        let shift = self.g.init_f32(dims, &shift);
        let scaled = self.g.node("Mul", vec![x, scale], vec![], None);
        Ok(self.g.node("Add", vec![scaled, shift], vec![], None))
    }

    fn bn2d(&mut self, prefix: &str, x: Value) -> Result<Value> {
        let c = x.shape[0];
        let name = self.batch_norm(prefix, x.name, c as usize, vec![1, c, 1, 1])?;
        Ok(Value { name, shape: x.shape })
    }

    fn prelu(&mut self, prefix: &str, x: Value) -> Result<Value> {
        let c = x.shape[0];
        let slope = self.w.vector(&format!("{prefix}.weight"), c as usize)?;
        let slope = self.g.init_f32(vec![c, 1, 1], &slope);
        let name = self.g.node("PRelu", vec![x.name, slope], vec![], None);
        Ok(Value { name, shape: x.shape })
    }

    fn unary(&mut self, op: &str, x: Value) -> Value {
        let name = self.g.node(op, vec![x.name], vec![], None);
        Value { name, shape: x.shape }
    }

    /// Upstream `Linear_block`: conv then batch norm.
    fn linear_block(&mut self, prefix: &str, x: Value, stride: i64, pad: i64) -> Result<Value> {
        let y = self.conv(&format!("{prefix}.conv"), x, stride, pad)?;
        self.bn2d(&format!("{prefix}.bn"), y)
    }

    /// Upstream `Conv_block`: conv, batch norm, PReLU.
    fn conv_block(&mut self, prefix: &str, x: Value, stride: i64, pad: i64) -> Result<Value> {
        let y = self.linear_block(prefix, x, stride, pad)?;
        self.prelu(&format!("{prefix}.prelu"), y)
    }

    /// Upstream `SEModule`: x * sigmoid(bn(fc2(relu(bn(fc1(avgpool(x))))))).
    fn squeeze_excite(&mut self, prefix: &str, x: Value) -> Result<Value> {
        let pooled = self.g.node("GlobalAveragePool", vec![x.name.clone()], vec![], None);
        let p = Value { name: pooled, shape: [x.shape[0], 1, 1] };
        let s = self.conv(&format!("{prefix}.fc1"), p, 1, 0)?;
        let s = self.bn2d(&format!("{prefix}.bn1"), s)?;
        let s = self.unary("Relu", s);
        let s = self.conv(&format!("{prefix}.fc2"), s, 1, 0)?;
        let s = self.bn2d(&format!("{prefix}.bn2"), s)?;
        let s = self.unary("Sigmoid", s);
        if s.shape[0] != x.shape[0] {
            return Err(shape_err(prefix, "excitation width differs from its input"));
        }
        let name = self.g.node("Mul", vec![x.name, s.name], vec![], None);
        Ok(Value { name, shape: x.shape })
    }

    /// Upstream `Depth_Wise` / `Depth_Wise_SE`: 1x1 expand, depthwise 3x3, 1x1 project; in a
    /// residual stage the input is added back (after squeeze-excitation when the block has one).
    fn depth_wise(&mut self, prefix: &str, x: Value, stride: i64, residual: bool) -> Result<Value> {
        let y = self.conv_block(&format!("{prefix}.conv"), x.clone(), 1, 0)?;
        let y = self.conv_block(&format!("{prefix}.conv_dw"), y, stride, 1)?;
        let mut y = self.linear_block(&format!("{prefix}.project"), y, 1, 0)?;
        let se = format!("{prefix}.se_module");
        if self.w.has(&format!("{se}.fc1.weight")) {
            if !residual {
                return Err(shape_err(&se, "squeeze-excitation outside a residual stage"));
            }
            y = self.squeeze_excite(&se, y)?;
        }
        if !residual {
            return Ok(y);
        }
        if y.shape != x.shape {
            return Err(shape_err(prefix, format!("residual shapes {:?} and {:?}", x.shape, y.shape)));
        }
        let name = self.g.node("Add", vec![x.name, y.name], vec![], None);
        Ok(Value { name, shape: x.shape })
    }

    /// Upstream `Residual` / `ResidualSE`: `<prefix>.model.0..n`, as many as the checkpoint has.
    fn residual_stage(&mut self, prefix: &str, mut x: Value) -> Result<Value> {
        let mut i = 0;
        while self.w.has(&format!("{prefix}.model.{i}.conv.conv.weight")) {
            x = self.depth_wise(&format!("{prefix}.model.{i}"), x, 1, true)?;
            i += 1;
        }
        if i == 0 {
            return Err(MiniFasNetError::Missing(format!("{prefix}.model.0")));
        }
        Ok(x)
    }

    /// `Linear(bias=False)` as MatMul with the transposed weight.
    fn linear(&mut self, name: &str, x: String, inputs: usize, output: Option<&str>) -> Result<(String, usize)> {
        let t = self.w.take(name)?;
        let [outs, ins] = t.shape[..] else {
            return Err(shape_err(name, format!("rank {} is not 2", t.shape.len())));
        };
        if ins != inputs {
            return Err(shape_err(name, format!("expects {ins} inputs, has {inputs}")));
        }
        let mut transposed = vec![0f32; ins * outs];
        for o in 0..outs {
            for i in 0..ins {
                transposed[i * outs + o] = t.data[o * ins + i];
            }
        }
        let w = self.g.init_f32(vec![ins as i64, outs as i64], &transposed);
        Ok((self.g.node("MatMul", vec![x, w], vec![], output), outs))
    }
}

/// The whole network, stage by stage, in upstream's forward order.
fn build(weights: Weights) -> Result<pb::ModelProto> {
    let mut b = Builder { g: Graph::default(), w: weights };
    let side = INPUT_SIZE as i64;
    let x = Value { name: INPUT_NAME.into(), shape: [3, side, side] };
    let x = b.conv_block("conv1", x, 2, 1)?;
    let x = b.conv_block("conv2_dw", x, 1, 1)?;
    let x = b.depth_wise("conv_23", x, 2, false)?;
    let x = b.residual_stage("conv_3", x)?;
    let x = b.depth_wise("conv_34", x, 2, false)?;
    let x = b.residual_stage("conv_4", x)?;
    let x = b.depth_wise("conv_45", x, 2, false)?;
    let x = b.residual_stage("conv_5", x)?;
    let x = b.conv_block("conv_6_sep", x, 1, 0)?;
    let x = b.linear_block("conv_6_dw", x, 1, 0)?;
    if x.shape[1] != 1 || x.shape[2] != 1 {
        return Err(shape_err("conv_6_dw.conv.weight", format!("leaves a {:?} map, not 1x1", x.shape)));
    }
    let flat = b.g.node("Flatten", vec![x.name], vec![int_attr("axis", 1)], None);
    let (emb, width) = b.linear("linear.weight", flat, x.shape[0] as usize, None)?;
    let emb = b.batch_norm("bn", emb, width, vec![1, width as i64])?;
    let (_, classes) = b.linear("prob.weight", emb, width, Some(OUTPUT_NAME))?;
    if classes != CLASSES {
        return Err(shape_err("prob.weight", format!("{classes} classes, expected {CLASSES}")));
    }
    let unused = b.w.unused();
    if !unused.is_empty() {
        return Err(MiniFasNetError::Unused(unused.join(", ")));
    }
    Ok(b.g.into_model(
        "minifasnet",
        "MiniFASNet passive liveness (minivision-ai Silent-Face-Anti-Spoofing, Apache-2.0), converted \
         from its PyTorch checkpoint. Input: BGR 0..255 80x80 face crop. Output: logits, softmax \
         class 1 = real.",
        CONVERTER_VERSION,
        value_info(INPUT_NAME, &[1, 3, side, side]),
        value_info(OUTPUT_NAME, &[1, CLASSES as i64]),
    ))
}

/// Reads the checkpoint's tensors, `module.` prefixes removed.
fn load_weights(pth: &[u8]) -> Result<Weights> {
    let dict = read_state_dict(pth)?;
    let mut tensors = BTreeMap::new();
    for (name, t) in dict.tensors {
        let name = name.strip_prefix(PREFIX).unwrap_or(&name).to_owned();
        if tensors.insert(name.clone(), t).is_some() {
            return Err(shape_err(&name, "appears twice"));
        }
    }
    Ok(Weights { tensors, used: BTreeSet::new() })
}

/// Converts the bytes of a MiniFASNet `.pth` (V2 or V1SE) into ONNX model bytes.
/// Deterministic: the same input always gives the same bytes.
pub fn convert(pth: &[u8]) -> std::result::Result<Vec<u8>, MiniFasNetError> {
    Ok(build(load_weights(pth)?)?.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_checkpoint_is_an_error() {
        assert!(matches!(convert(b""), Err(MiniFasNetError::Pickle(PickleError::Truncated(0)))));
        // A protocol-2 pickle of the integer 1: valid pickle, not a torch.save header.
        assert!(matches!(convert(&[0x80, 2, b'K', 1, b'.']), Err(MiniFasNetError::Pickle(PickleError::Format(_)))));
    }
}
